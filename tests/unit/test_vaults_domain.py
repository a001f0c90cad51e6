"""Vault rules: names, ARNs, retention, tags, association changes, restore access grants, and the
freeze of a vault's guard while a recovery is in progress."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from airlock_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    InvalidTransition,
)
from airlock_server.domain.teams import Team, TeamState, TeamStatus, TeamVersion
from airlock_server.domain.vaults import (
    ALLOWED_TRANSITIONS,
    AssociationPath,
    GrantState,
    PendingAssociation,
    RestoreAccessGrant,
    Vault,
    VaultArn,
    apply_association_change,
    approve_grant,
    associate_now,
    default_restore_vault_name,
    drop_association_change,
    drop_revoke,
    end_with_team,
    fail_grant,
    is_recovery,
    new_grant,
    new_vault,
    on_team_deleted,
    open_grant,
    parse_vault_arn,
    plan_association,
    plan_disassociation,
    recovery_in_progress,
    request_association_change,
    request_revoke,
    require_guard_unfrozen,
    require_no_open_grant,
    require_owner_may_revoke,
    require_team_can_guard,
    revoke,
    transition,
    vault_arn,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
OWNER = "111111111111"
RECOVERY = "222222222222"


def vault(**overrides: object) -> Vault:
    v = new_vault(
        account_id=OWNER,
        name="prod-lag",
        region="us-east-1",
        min_retention_days=7,
        max_retention_days=365,
        tags={"env": "prod"},
        now=T0,
    )
    return replace(v, **overrides)  # type: ignore[arg-type]


def grant(**overrides: object) -> RestoreAccessGrant:
    g = new_grant(
        grant_id="g1",
        vault=vault(team_id="t1"),
        account_id=RECOVERY,
        restore_vault_name="",
        session_id="s1",
        comment="account A is compromised",
        now=T0,
    )
    return replace(g, **overrides)  # type: ignore[arg-type]


# --- ARNs ---


def test_new_vault_builds_its_arn() -> None:
    v = vault()
    assert v.vault_arn == "arn:aws:backup:us-east-1:111111111111:backup-vault:prod-lag"
    assert v.team_id is None
    assert v.pending_association is None
    assert v.tags == {"env": "prod"}


def test_arn_round_trip() -> None:
    arn = vault_arn("eu-west-1", OWNER, "a.b_c-d")
    parsed = parse_vault_arn(arn)
    assert parsed == VaultArn("eu-west-1", OWNER, "a.b_c-d")
    assert str(parsed) == arn


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "arn:aws:backup:us-east-1:111111111111:vault:x",
        "arn:aws:mpa:us-east-1:111111111111:backup-vault:x",
        "arn:aws:backup:us-east-1:11111111111:backup-vault:x",
        "arn:aws:backup:us-east-1:1111111111112:backup-vault:x",
        "arn:aws:backup:US-EAST-1:111111111111:backup-vault:x",
        "arn:aws:backup::111111111111:backup-vault:x",
        "arn:aws:backup:us-east-1:111111111111:backup-vault:",
        "arn:aws:backup:us-east-1:111111111111:backup-vault:bad/name",
        "arn:aws:backup:us-east-1:111111111111:backup-vault:" + "n" * 65,
        "arn:aws:backup:us-east-1:111111111111:backup-vault:a:b",
    ],
)
def test_bad_arns_are_invalid_on_vault_arn(arn: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_vault_arn(arn)
    assert {v.field for v in err.value.violations} == {"vault_arn"}


def test_parse_names_the_callers_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_vault_arn("nope", field="source_vault_arn")
    assert err.value.violations[0].field == "source_vault_arn"


# --- vault validation ---


@pytest.mark.parametrize(
    ("name", "lo", "hi", "tags", "fields"),
    [
        ("v", 7, 7, {}, set()),
        ("v", 7, 36500, {}, set()),
        ("n" * 64, 36500, 36500, {}, set()),
        ("", 7, 7, {}, {"name"}),
        ("n" * 65, 7, 7, {}, {"name"}),
        ("has space", 7, 7, {}, {"name"}),
        ("v", 6, 7, {}, {"min_retention_days"}),
        ("v", 7, 36501, {}, {"max_retention_days"}),
        ("v", 30, 10, {}, {"max_retention_days"}),
        ("v", 0, 0, {}, {"min_retention_days", "max_retention_days"}),
        ("v", 7, 7, {f"k{i}": "v" for i in range(51)}, {"tags"}),
        ("v", 7, 7, {f"k{i}": "v" for i in range(50)}, set()),
        ("v", 7, 7, {"": "v"}, {"tags['']"}),
        ("v", 7, 7, {"k" * 129: "v"}, {f"tags['{'k' * 129}']"}),
        ("v", 7, 7, {"k": "v" * 257}, {"tags['k']"}),
        ("v", 7, 7, {"k" * 128: "v" * 256}, set()),
        ("bad/", 3, 2, {"": ""}, {"name", "min_retention_days", "max_retention_days", "tags['']"}),
    ],
)
def test_vault_validation_table(
    name: str, lo: int, hi: int, tags: dict[str, str], fields: set[str]
) -> None:
    def create() -> Vault:
        return new_vault(
            account_id=OWNER,
            name=name,
            region="us-east-1",
            min_retention_days=lo,
            max_retention_days=hi,
            tags=tags,
            now=T0,
        )

    if not fields:
        assert create().name == name
        return
    with pytest.raises(InvalidArgument) as err:
        create()
    assert {v.field for v in err.value.violations} == fields


# --- association ---


def _team(state: TeamState) -> Team:
    version = TeamVersion(1, "", 2, timedelta(hours=24), timedelta(hours=24), (), T0, T0)
    return Team("t1", "arn", "team", state, TeamStatus.ACTIVE, "", version, 1, T0, T0)


def test_only_an_active_team_guards() -> None:
    require_team_can_guard(_team(TeamState.ACTIVE))
    for state in (TeamState.PENDING, TeamState.INACTIVE, TeamState.DELETING, TeamState.DELETED):
        with pytest.raises(FailedPrecondition) as err:
            require_team_can_guard(_team(state))
        assert err.value.reason == "TEAM_NOT_ACTIVE"
        assert state.value in err.value.message


def test_first_association_is_immediate() -> None:
    v = vault()
    assert plan_association(v, "t1") is AssociationPath.IMMEDIATE
    assert associate_now(v, "t1", LATER) == replace(v, team_id="t1", update_time=LATER)


def test_later_association_needs_the_current_team() -> None:
    v = vault(team_id="t1")
    assert plan_association(v, "t2") is AssociationPath.SESSION
    with pytest.raises(FailedPrecondition) as err:
        associate_now(v, "t2", LATER)
    assert err.value.reason == "ASSOCIATION_NEEDS_APPROVAL"


def test_associating_the_same_team_again_is_refused() -> None:
    with pytest.raises(FailedPrecondition) as err:
        plan_association(vault(team_id="t1"), "t1")
    assert err.value.reason == "TEAM_ALREADY_ASSOCIATED"


@pytest.mark.parametrize("target", ["t2", None])
def test_change_waits_for_approval_then_applies(target: str | None) -> None:
    v = request_association_change(vault(team_id="t1"), target, "s9", LATER)
    assert v.team_id == "t1"
    assert v.pending_association == PendingAssociation(target, "s9", LATER)
    done = apply_association_change(v, "s9", LATER + timedelta(hours=1))
    assert done.team_id == target
    assert done.pending_association is None


@pytest.mark.parametrize("target", ["t2", None])
def test_failed_change_keeps_the_team(target: str | None) -> None:
    v = request_association_change(vault(team_id="t1"), target, "s9", LATER)
    kept = drop_association_change(v, "s9", LATER)
    assert kept.team_id == "t1"
    assert kept.pending_association is None


@pytest.mark.parametrize(
    "attempt",
    [
        lambda v: plan_association(v, "t3"),
        lambda v: plan_disassociation(v),
        lambda v: request_association_change(v, "t3", "s10", LATER),
        lambda v: request_association_change(v, None, "s10", LATER),
    ],
)
def test_one_pending_change_at_a_time(attempt: object) -> None:
    v = request_association_change(vault(team_id="t1"), "t2", "s9", LATER)
    with pytest.raises(FailedPrecondition) as err:
        attempt(v)  # type: ignore[operator]
    assert err.value.reason == "ASSOCIATION_CHANGE_PENDING"


def test_disassociation_votes_by_the_current_team() -> None:
    assert plan_disassociation(vault(team_id="t1")) == "t1"


@pytest.mark.parametrize("target", [None, "t2"])
def test_no_session_change_without_a_team(target: str | None) -> None:
    with pytest.raises(FailedPrecondition) as err:
        request_association_change(vault(), target, "s9", LATER)
    assert err.value.reason == "NO_TEAM_ASSOCIATED"


@pytest.mark.parametrize("apply", [apply_association_change, drop_association_change])
def test_outcome_must_match_the_pending_session(apply: object) -> None:
    v = request_association_change(vault(team_id="t1"), "t2", "s9", LATER)
    for candidate in (v, vault(team_id="t1")):
        with pytest.raises(FailedPrecondition) as err:
            apply(candidate, "other", LATER)  # type: ignore[operator]
        assert err.value.reason == "NO_PENDING_ASSOCIATION_CHANGE"


@pytest.mark.parametrize(
    ("team", "pending_to", "deleted", "team_after", "pending_kept"),
    [
        ("t1", None, "t1", None, False),
        ("t1", "t2", "t1", None, False),
        ("t1", "t2", "t2", "t1", False),
        ("t1", "t2", "t3", "t1", True),
        (None, None, "t1", None, False),
    ],
)
def test_team_deletion_ends_associations(
    team: str | None,
    pending_to: str | None,
    deleted: str,
    team_after: str | None,
    pending_kept: bool,
) -> None:
    v = vault(team_id=team)
    if pending_to is not None:
        v = request_association_change(v, pending_to, "s9", T0)
    after = on_team_deleted(v, deleted, LATER)
    assert after.team_id == team_after
    assert (after.pending_association is not None) is pending_kept
    if after.team_id == v.team_id and after.pending_association == v.pending_association:
        assert after is v


# --- grants ---


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        (GrantState.CREATING, GrantState.AVAILABLE, True),
        (GrantState.CREATING, GrantState.FAILED, True),
        (GrantState.CREATING, GrantState.REVOKED, False),
        (GrantState.AVAILABLE, GrantState.REVOKED, True),
        (GrantState.AVAILABLE, GrantState.FAILED, False),
        (GrantState.AVAILABLE, GrantState.CREATING, False),
        (GrantState.FAILED, GrantState.AVAILABLE, False),
        (GrantState.REVOKED, GrantState.AVAILABLE, False),
    ],
)
def test_grant_transition_table(current: GrantState, target: GrantState, ok: bool) -> None:
    if ok:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(current, target)
    assert ALLOWED_TRANSITIONS[GrantState.REVOKED] == frozenset()


def test_new_grant_lives_in_the_recovery_account() -> None:
    g = grant()
    assert g.state is GrantState.CREATING
    assert not g.grants_access
    assert g.vault_arn == "arn:aws:backup:us-east-1:111111111111:backup-vault:prod-lag"
    assert g.restore_vault_name == "prod-lag-restore-g1"
    assert g.restore_vault_arn == (
        "arn:aws:backup:us-east-1:222222222222:backup-vault:prod-lag-restore-g1"
    )


def test_requested_restore_vault_name_is_kept() -> None:
    g = new_grant(
        grant_id="g1",
        vault=vault(),
        account_id=RECOVERY,
        restore_vault_name="my-copy",
        session_id="s1",
        comment="",
        now=T0,
    )
    assert g.restore_vault_arn.endswith(":222222222222:backup-vault:my-copy")


@pytest.mark.parametrize(
    ("name", "grant_id", "expected"),
    [
        ("v", "0f3a9b2c-77aa", "v-restore-0f3a9b2c"),
        ("n" * 64, "abcdef0123456789", "n" * 47 + "-restore-abcdef01"),
        ("v", "---", "v-restore-0"),
    ],
)
def test_default_restore_vault_name(name: str, grant_id: str, expected: str) -> None:
    got = default_restore_vault_name(name, grant_id)
    assert got == expected
    assert len(got) <= 64
    parse_vault_arn(vault_arn("us-east-1", RECOVERY, got))


@pytest.mark.parametrize(
    ("restore_name", "comment", "account", "fields"),
    [
        ("bad name", "", RECOVERY, {"restore_vault_name"}),
        ("n" * 65, "c" * 201, RECOVERY, {"restore_vault_name", "comment"}),
        ("", "", "123", {"account_id"}),
    ],
)
def test_grant_request_validation(
    restore_name: str, comment: str, account: str, fields: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as err:
        new_grant(
            grant_id="g1",
            vault=vault(),
            account_id=account,
            restore_vault_name=restore_name,
            session_id="s1",
            comment=comment,
            now=T0,
        )
    assert {v.field for v in err.value.violations} == fields


def test_grant_lifecycle_approve_then_revoke() -> None:
    g = approve_grant(grant(), LATER)
    assert g.state is GrantState.AVAILABLE
    assert g.grants_access
    g = request_revoke(g, "rs1", LATER)
    # A pending revocation does not end access.
    assert g.grants_access
    assert g.revoke_session_id == "rs1"
    with pytest.raises(FailedPrecondition) as err:
        request_revoke(g, "rs2", LATER)
    assert err.value.reason == "REVOKE_PENDING"
    with pytest.raises(FailedPrecondition) as err:
        revoke(g, "rs2", LATER)
    assert err.value.reason == "NO_PENDING_REVOKE"
    done = revoke(g, "rs1", LATER)
    assert done.state is GrantState.REVOKED
    assert not done.grants_access


def test_failed_revoke_keeps_access() -> None:
    g = request_revoke(approve_grant(grant(), LATER), "rs1", LATER)
    kept = drop_revoke(g, "rs1", LATER)
    assert kept.state is GrantState.AVAILABLE
    assert kept.revoke_session_id is None
    assert request_revoke(kept, "rs2", LATER).revoke_session_id == "rs2"


@pytest.mark.parametrize(
    "g",
    [grant(), grant(state=GrantState.FAILED), grant(state=GrantState.REVOKED)],
)
def test_only_available_grants_are_revoked(g: RestoreAccessGrant) -> None:
    with pytest.raises(FailedPrecondition) as err:
        request_revoke(g, "rs1", LATER)
    assert err.value.reason == "GRANT_NOT_AVAILABLE"
    assert g.state.value in err.value.message


def test_failed_session_fails_the_grant() -> None:
    g = fail_grant(grant(), "the session failed: REJECTED", LATER)
    assert g.state is GrantState.FAILED
    assert g.status_message.endswith("REJECTED")
    with pytest.raises(InvalidTransition):
        approve_grant(g, LATER)


@pytest.mark.parametrize(
    ("state", "after"),
    [
        (GrantState.CREATING, GrantState.FAILED),
        (GrantState.AVAILABLE, GrantState.REVOKED),
        (GrantState.FAILED, GrantState.FAILED),
        (GrantState.REVOKED, GrantState.REVOKED),
    ],
)
def test_team_deletion_ends_grants(state: GrantState, after: GrantState) -> None:
    g = grant(state=state, revoke_session_id="rs1" if state is GrantState.AVAILABLE else None)
    ended = end_with_team(g, LATER)
    assert ended.state is after
    assert not ended.grants_access


@pytest.mark.parametrize(
    ("states", "open_id"),
    [
        ([], None),
        ([GrantState.FAILED, GrantState.REVOKED], None),
        ([GrantState.FAILED, GrantState.CREATING], "g1"),
        ([GrantState.REVOKED, GrantState.AVAILABLE], "g1"),
    ],
)
def test_one_open_request_per_vault_and_account(
    states: list[GrantState], open_id: str | None
) -> None:
    grants = [grant(grant_id=f"g{i}", state=s) for i, s in enumerate(states)]
    arn = grant().vault_arn
    found = open_grant(grants, arn, RECOVERY)
    assert (found.grant_id if found else None) == open_id
    # Another account, or another vault, is never blocked by these.
    assert open_grant(grants, arn, "333333333333") is None
    assert open_grant(grants, arn.replace("prod-lag", "other"), RECOVERY) is None
    if open_id is None:
        require_no_open_grant(grants, arn, RECOVERY)
    else:
        with pytest.raises(AlreadyExists):
            require_no_open_grant(grants, arn, RECOVERY)


# --- a recovery in progress freezes the guard against the owner ---

GUARDED = vault(team_id="t1")


@pytest.mark.parametrize(
    ("g", "recovering"),
    [
        (grant(), True),  # CREATING: its session is pending
        (grant(state=GrantState.AVAILABLE), True),
        # A pending revocation leaves the grant AVAILABLE: still a recovery.
        (grant(state=GrantState.AVAILABLE, revoke_session_id="rs1"), True),
        (grant(state=GrantState.FAILED), False),
        (grant(state=GrantState.REVOKED), False),
        # The owner's own request is no recovery against it.
        (grant(account_id=OWNER), False),
        (grant(account_id=OWNER, state=GrantState.AVAILABLE), False),
        # Another vault's grant says nothing about this one.
        (grant(vault_arn=GUARDED.vault_arn.replace("prod-lag", "other")), False),
    ],
)
def test_what_is_a_recovery_in_progress(g: RestoreAccessGrant, recovering: bool) -> None:
    assert is_recovery(GUARDED, g) is recovering
    assert (recovery_in_progress(GUARDED, [g]) is g) is recovering
    if recovering:
        with pytest.raises(FailedPrecondition) as err:
            require_guard_unfrozen(GUARDED, [g])
        assert err.value.reason == "VAULT_UNDER_RECOVERY"
        assert err.value.metadata == {
            "vaultArn": GUARDED.vault_arn,
            "grantId": g.grant_id,
            "state": g.state.value,
        }
        assert g.grant_id in err.value.message
        assert g.state.value in err.value.message
    else:
        require_guard_unfrozen(GUARDED, [g])


def test_no_grants_no_freeze() -> None:
    require_guard_unfrozen(GUARDED, [])
    assert recovery_in_progress(GUARDED, []) is None


def test_the_oldest_recovery_is_named() -> None:
    grants = [
        grant(grant_id="g3", state=GrantState.FAILED, create_time=T0 - timedelta(days=2)),
        grant(grant_id="g2", state=GrantState.AVAILABLE, create_time=LATER),
        grant(grant_id="g1", account_id="333333333333", create_time=T0),
        grant(grant_id="g0", account_id=OWNER, create_time=T0 - timedelta(days=1)),
    ]
    found = recovery_in_progress(GUARDED, grants)
    assert found is not None
    assert found.grant_id == "g1"
    with pytest.raises(FailedPrecondition) as err:
        require_guard_unfrozen(GUARDED, grants)
    assert err.value.metadata["grantId"] == "g1"
    assert err.value.metadata["state"] == "CREATING"


@pytest.mark.parametrize(
    ("g", "refused"),
    [
        (grant(state=GrantState.AVAILABLE), True),
        (grant(state=GrantState.AVAILABLE, revoke_session_id="rs1"), True),
        (grant(), True),
        (grant(account_id=OWNER, state=GrantState.AVAILABLE), False),
        # Ended grants are no recovery; request_revoke refuses them on their own state.
        (grant(state=GrantState.REVOKED), False),
        (grant(state=GrantState.FAILED), False),
    ],
)
def test_the_owner_revokes_only_its_own_accounts_grants(
    g: RestoreAccessGrant, refused: bool
) -> None:
    if refused:
        with pytest.raises(FailedPrecondition) as err:
            require_owner_may_revoke(GUARDED, g)
        assert err.value.reason == "VAULT_UNDER_RECOVERY"
        assert err.value.metadata["grantId"] == g.grant_id
        assert err.value.metadata["state"] == g.state.value
    else:
        require_owner_may_revoke(GUARDED, g)


def test_the_guard_thaws_when_the_recovery_ends() -> None:
    creating = grant()
    with pytest.raises(FailedPrecondition):
        require_guard_unfrozen(GUARDED, [creating])
    require_guard_unfrozen(GUARDED, [fail_grant(creating, "the session failed: EXPIRED", LATER)])
    available = approve_grant(creating, LATER)
    with pytest.raises(FailedPrecondition):
        require_guard_unfrozen(GUARDED, [available])
    revoking = request_revoke(available, "rs1", LATER)
    with pytest.raises(FailedPrecondition):
        require_guard_unfrozen(GUARDED, [revoking])
    require_guard_unfrozen(GUARDED, [revoke(revoking, "rs1", LATER)])
    require_guard_unfrozen(GUARDED, [end_with_team(available, LATER)])

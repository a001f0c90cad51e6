"""Proto shapes and domain values: times, durations, principals, teams, credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import duration_pb2

from airlock.v1 import audit_service_pb2, common_pb2, identity_pb2, team_pb2
from airlock_server.app.teams import InvitationView
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.identities import Account, Approver, Credential
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamShare,
    TeamState,
    TeamStatus,
    TeamVersion,
)
from airlock_server.transport import convert, convert_audit

T0 = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
DAY = timedelta(hours=24)
KEY = bytes(range(32))

# --- times and durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    "t",
    [
        T0,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        T0.astimezone(timezone(timedelta(hours=-7))),
    ],
)
def test_timestamp_round_trip(t: datetime) -> None:
    pb = convert.ts(t)
    assert pb is not None
    back = convert.from_ts(pb)
    assert back == t
    assert back.tzinfo is UTC


def test_timestamp_is_utc_seconds_and_nanos() -> None:
    pb = convert.ts(T0)
    assert pb is not None
    assert pb.seconds == int(T0.timestamp())
    assert pb.nanos == 890123000


def test_no_time_is_no_timestamp() -> None:
    assert convert.ts(None) is None


@pytest.mark.parametrize(
    "d",
    [
        timedelta(minutes=15),
        DAY,
        timedelta(days=7),
        timedelta(seconds=1, microseconds=5),
        timedelta(microseconds=1),
    ],
)
def test_duration_round_trip(d: timedelta) -> None:
    assert convert.from_dur(convert.dur(d), "session_ttl") == d


def test_unset_duration_is_none_so_the_default_applies() -> None:
    assert convert.from_dur(duration_pb2.Duration(), "session_ttl") is None


@pytest.mark.parametrize(
    "pb",
    [duration_pb2.Duration(seconds=-1), duration_pb2.Duration(nanos=-5)],
    ids=["seconds", "nanos"],
)
def test_negative_duration_is_refused(pb: duration_pb2.Duration) -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert.from_dur(pb, "invitation_ttl")
    assert [v.field for v in caught.value.violations] == ["invitation_ttl"]


# --- principals ----------------------------------------------------------------------------

KINDS = [
    (PrincipalKind.ADMIN, common_pb2.PRINCIPAL_KIND_ADMIN, ""),
    (PrincipalKind.ACCOUNT, common_pb2.PRINCIPAL_KIND_ACCOUNT, "123456789012"),
    (PrincipalKind.APPROVER, common_pb2.PRINCIPAL_KIND_APPROVER, "alice"),
    (PrincipalKind.SERVICE, common_pb2.PRINCIPAL_KIND_SERVICE, "orchestrator"),
    (PrincipalKind.AUDITOR, common_pb2.PRINCIPAL_KIND_AUDITOR, "compliance"),
]


@pytest.mark.parametrize(("kind", "pb_kind", "subject"), KINDS, ids=lambda x: str(x))
def test_principal_kinds_round_trip(kind: PrincipalKind, pb_kind: int, subject: str) -> None:
    pb = convert.principal_pb(Principal(kind, subject))
    assert pb.kind == pb_kind
    assert pb.subject == subject
    assert convert.principal_kind(pb.kind) is kind


def test_every_kind_a_caller_can_have_has_a_proto_kind() -> None:
    callers = {k for k in PrincipalKind if k is not PrincipalKind.SYSTEM}
    assert {k for k, _, _ in KINDS} == callers
    named = {
        v
        for k, v in common_pb2.PrincipalKind.items()
        if k not in ("PRINCIPAL_KIND_UNSPECIFIED", "PRINCIPAL_KIND_SYSTEM")
    }
    assert {v for _, v, _ in KINDS} == named


@pytest.mark.parametrize(
    "raw", [common_pb2.PRINCIPAL_KIND_UNSPECIFIED, common_pb2.PRINCIPAL_KIND_SYSTEM, 99, -1]
)
def test_unknown_principal_kind_is_refused(raw: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert.principal_kind(raw, field="grantee.kind")
    assert [v.field for v in caught.value.violations] == ["grantee.kind"]


def test_system_is_shown_as_its_own_kind() -> None:
    pb = convert.principal_pb(SYSTEM)
    assert pb.kind == common_pb2.PRINCIPAL_KIND_SYSTEM
    assert pb.subject == ""
    event_actor = convert_audit.actor_pb(str(SYSTEM))
    assert (event_actor.kind, event_actor.subject) == (common_pb2.PRINCIPAL_KIND_SYSTEM, "")


def test_the_system_actor_filter_selects_airlocks_own_events() -> None:
    def query(actor: common_pb2.Principal) -> tuple[str, str]:
        q = convert_audit.event_query(audit_service_pb2.ListEventsRequest(actor=actor))
        return q.actor, q.actor_kind

    assert query(common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_SYSTEM)) == ("", "system")
    # Clients from before PRINCIPAL_KIND_SYSTEM named it by subject alone; that still works.
    assert query(common_pb2.Principal(subject="system")) == ("system", "")


# --- identities ----------------------------------------------------------------------------


def test_approver_pb() -> None:
    enabled = convert.approver_pb(Approver("alice", "Alice", "a@example.com", True, T0))
    assert (enabled.approver_id, enabled.display_name, enabled.email) == (
        "alice",
        "Alice",
        "a@example.com",
    )
    assert enabled.state == identity_pb2.Approver.STATE_ENABLED
    assert convert.from_ts(enabled.create_time) == T0
    assert not enabled.HasField("disable_time")
    disabled = convert.approver_pb(Approver("bob", "Bob", "", False, T0, T0 + DAY))
    assert disabled.state == identity_pb2.Approver.STATE_DISABLED
    assert convert.from_ts(disabled.disable_time) == T0 + DAY


def test_account_pb() -> None:
    pb = convert.account_pb(Account("123456789012", "prod", T0))
    assert (pb.account_id, pb.name, convert.from_ts(pb.create_time)) == ("123456789012", "prod", T0)


@pytest.mark.parametrize(
    ("expire", "revoke", "state"),
    [
        (None, None, identity_pb2.Credential.STATE_ACTIVE),
        (T0 + DAY, None, identity_pb2.Credential.STATE_ACTIVE),
        (T0 - DAY, None, identity_pb2.Credential.STATE_EXPIRED),
        (T0, None, identity_pb2.Credential.STATE_EXPIRED),
        (None, T0 - DAY, identity_pb2.Credential.STATE_REVOKED),
        (T0 - DAY, T0 - DAY, identity_pb2.Credential.STATE_REVOKED),
    ],
)
def test_credential_pb_state(expire: datetime | None, revoke: datetime | None, state: int) -> None:
    c = Credential(
        "cred-1",
        Principal(PrincipalKind.SERVICE, "svc"),
        "ci",
        T0 - timedelta(days=2),
        expire_time=expire,
        revoke_time=revoke,
    )
    pb = convert.credential_pb(c, T0)
    assert pb.state == state
    assert pb.credential_id == "cred-1"
    assert pb.principal.kind == common_pb2.PRINCIPAL_KIND_SERVICE
    assert pb.HasField("expire_time") is (expire is not None)
    assert pb.HasField("revoke_time") is (revoke is not None)
    # Whatever it shows, a credential never carries a secret.
    assert not any("token" in f.name or "secret" in f.name for f, _ in pb.ListFields())


# --- teams ---------------------------------------------------------------------------------


def members() -> tuple[TeamMember, ...]:
    return (
        TeamMember("alice", "inv-a", InvitationState.ACCEPTED, T0, KEY),
        TeamMember("bob", "inv-b", InvitationState.PENDING),
        TeamMember("carol", "inv-c", InvitationState.DECLINED, T0 + timedelta(hours=1)),
    )


def team(pending: TeamVersion | None = None) -> Team:
    v = TeamVersion(3, "the guardians", 2, timedelta(hours=12), DAY, members(), T0, T0 + DAY)
    return Team(
        team_id="team-1",
        arn="arn:aws:mpa:us-east-1:approval-team/team-1",
        name="guardians",
        state=TeamState.PENDING,
        status=TeamStatus.PENDING_ACTIVATION,
        status_message="waiting",
        current=v,
        revision=9,
        create_time=T0,
        update_time=T0 + timedelta(minutes=5),
        pending=pending,
        update_session_id="sess-1" if pending else None,
    )


def test_team_pb_fields() -> None:
    pb = convert.team_pb(team())
    assert (pb.team_id, pb.arn, pb.name, pb.description) == (
        "team-1",
        "arn:aws:mpa:us-east-1:approval-team/team-1",
        "guardians",
        "the guardians",
    )
    assert pb.state == team_pb2.ApprovalTeam.STATE_PENDING
    assert pb.status_code == team_pb2.ApprovalTeam.STATUS_CODE_PENDING_ACTIVATION
    assert pb.status_message == "waiting"
    assert (pb.min_approvals, pb.number_of_approvers, pb.version) == (2, 3, 3)
    assert pb.session_ttl.ToTimedelta() == timedelta(hours=12)
    assert pb.invitation_ttl.ToTimedelta() == DAY
    assert convert.from_ts(pb.invitation_expire_time) == T0 + DAY
    assert pb.etag == 'W/"9"'
    assert convert.from_ts(pb.create_time) == T0
    assert convert.from_ts(pb.update_time) == T0 + timedelta(minutes=5)
    assert not pb.HasField("pending_update")
    assert pb.update_session_id == ""
    assert [
        (a.approver_id, a.invitation_id, a.invitation_state, a.public_key) for a in pb.approvers
    ] == [
        ("alice", "inv-a", team_pb2.Invitation.STATE_ACCEPTED, KEY),
        ("bob", "inv-b", team_pb2.Invitation.STATE_PENDING, b""),
        ("carol", "inv-c", team_pb2.Invitation.STATE_DECLINED, b""),
    ]
    assert convert.from_ts(pb.approvers[0].response_time) == T0
    assert not pb.approvers[1].HasField("response_time")


def test_team_pb_with_a_pending_update() -> None:
    draft = TeamVersion(
        4,
        "bigger",
        3,
        DAY,
        timedelta(hours=2),
        (*members(), TeamMember("dave", "inv-d", InvitationState.PENDING)),
        T0 + DAY,
        T0 + DAY + timedelta(hours=2),
    )
    pb = convert.team_pb(team(pending=draft))
    assert pb.version == 3
    assert pb.update_session_id == "sess-1"
    assert pb.pending_update.version == 4
    assert pb.pending_update.session_id == "sess-1"
    assert (pb.pending_update.min_approvals, pb.pending_update.number_of_approvers) == (3, 4)
    assert [a.approver_id for a in pb.pending_update.approvers][-1] == "dave"
    # The invitations that are open are those of the draft.
    assert convert.from_ts(pb.invitation_expire_time) == T0 + DAY + timedelta(hours=2)


@pytest.mark.parametrize("state", list(TeamState))
def test_every_team_state_has_a_proto_state(state: TeamState) -> None:
    pb_state = convert.team_state_pb(state)
    assert team_pb2.ApprovalTeam.State.Name(pb_state) == f"STATE_{state.value}"
    assert convert.TEAM_STATES_BACK[pb_state] is state


@pytest.mark.parametrize("status", list(TeamStatus))
def test_every_team_status_converts(status: TeamStatus) -> None:
    value = convert.team_status_pb(status)
    name = team_pb2.ApprovalTeam.StatusCode.Name(value)
    assert name in (f"STATUS_CODE_{status.value}", "STATUS_CODE_UNSPECIFIED")
    if status in (TeamStatus.PENDING_ACTIVATION, TeamStatus.FAILED_ACTIVATION):
        assert name == f"STATUS_CODE_{status.value}"


@pytest.mark.parametrize("state", list(InvitationState))
def test_every_invitation_state_round_trips(state: InvitationState) -> None:
    m = TeamMember("alice", "inv-a", state)
    t = team()
    pb = convert.invitation_pb(InvitationView(t, t.current, m))
    assert team_pb2.Invitation.State.Name(pb.state) == f"STATE_{state.value}"
    assert convert.INVITATION_STATES_BACK[pb.state] is state


def test_invitation_pb() -> None:
    t = team()
    pb = convert.invitation_pb(InvitationView(t, t.current, t.current.members[1]))
    assert (pb.invitation_id, pb.team_id, pb.team_name, pb.team_version, pb.approver_id) == (
        "inv-b",
        "team-1",
        "guardians",
        3,
        "bob",
    )
    assert convert.from_ts(pb.expire_time) == T0 + DAY
    assert list(pb.approver_ids) == ["alice", "bob", "carol"]
    assert (pb.min_approvals, pb.number_of_approvers) == (2, 3)
    assert pb.team_description == "the guardians"


@pytest.mark.parametrize(
    ("kind", "subject", "pb_kind"),
    [
        ("account", "123456789012", common_pb2.PRINCIPAL_KIND_ACCOUNT),
        ("service", "orchestrator", common_pb2.PRINCIPAL_KIND_SERVICE),
    ],
)
def test_share_pb(kind: str, subject: str, pb_kind: int) -> None:
    pb = convert.share_pb(TeamShare("team-1", kind, subject, T0))
    assert (pb.team_id, pb.principal.kind, pb.principal.subject) == ("team-1", pb_kind, subject)
    assert convert.from_ts(pb.create_time) == T0

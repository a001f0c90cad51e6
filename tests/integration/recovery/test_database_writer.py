"""The database is not trusted (docs/threat-model.md): attacks by someone with full SQL access
to the database but not the log key, each played end to end through SQL on SQLite and
PostgreSQL, and refused or detected with a named reason.

1. Forge an approved restore: credential rows with hashes of tokens the attacker chose, the
   approvers' enrolled keys replaced, `invitation.accepted` events with those keys appended
   with a correct hash chain and the head moved, then votes signed with the attacker's keys.
5. Bury an approval under refusals: a flood of refused calls with long resources.
7. Edit the subject index (`event_subjects`) outside the chain.
8. Re-hash the log from ListEvents alone (the canonical bytes of each event).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from integration.recovery.recovery_world import World, raw_key
from integration.tamper import drop_guards
from sqlalchemy import text

from airlock.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)
from airlock_server.app.ports import EventQuery
from airlock_server.app.teams import TeamUpdate
from airlock_server.domain.errors import FailedPrecondition, Unauthenticated
from airlock_server.domain.events import Problem, checkpoint_message, event_hash, format_time
from airlock_server.domain.principals import PrincipalKind
from airlock_server.domain.sessions import VoteDecision, vote_digest
from airlock_server.transport.limits import Limits
from airlock_server.transport.server import UseCases, build_server

pytestmark = pytest.mark.asyncio


async def _sql(world: World, statement: str, **params: Any) -> list[Any]:
    """One statement of the attacker's, in a transaction of its own."""
    async with world.app.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


async def _append_forged(
    world: World, events: list[tuple[str, str, list[str], dict[str, Any]]]
) -> int:
    """Events chained after the stored head with correct hashes, and the head row moved to the
    last of them, as the attacker writes them (no trigger is disabled). Returns the first seq."""
    (head,) = await _sql(world, "SELECT seq, hash, time FROM log_head WHERE id = 1")
    seq, prev, time = int(head[0]), bytes(head[1]), world.clock()
    first = seq + 1
    for type_, actor, subjects, details in events:
        seq += 1
        h = event_hash(seq, time, type_, actor, subjects, details, prev)
        await _sql(
            world,
            "INSERT INTO events (seq, time, type, actor, subjects, details, prev_hash, hash) "
            "VALUES (:seq, :time, :type, :actor, :subjects, :details, :prev, :hash)",
            seq=seq,
            time=time if world.app.engine.dialect.name == "postgresql" else format_time(time),
            type=type_,
            actor=actor,
            subjects=json.dumps(subjects),
            details=json.dumps(details),
            prev=prev,
            hash=h,
        )
        for s in subjects:
            await _sql(
                world, "INSERT INTO event_subjects (subject, seq) VALUES (:s, :q)", s=s, q=seq
            )
        prev = h
    await _sql(
        world,
        "UPDATE log_head SET seq = :seq, hash = :hash WHERE id = 1",
        seq=seq,
        hash=prev,
    )
    return first


async def _restore_request(world: World) -> tuple[str, str]:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    return arn, asked.session.session.session_id


async def test_a_database_writer_cannot_forge_an_approved_restore(world: World) -> None:
    """Issue 9, "What was seen" 1, exactly as described, and each step's refusal."""
    arn, sid = await _restore_request(world)
    assert world.app.audit is not None
    before = await world.app.audit.checkpoint(world.auditor)

    attacker = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob")}
    tokens = {name: f"airlock_{secrets.token_urlsafe(24)}" for name in attacker}
    # 1. Credential rows for two approvers, with hashes of tokens the attacker chose.
    for name, token in tokens.items():
        await _sql(
            world,
            "INSERT INTO credentials (credential_id, principal_kind, subject, description, "
            "token_hash, create_time) VALUES (:id, 'approver', :name, '', :h, :t)",
            id=f"cred-forged-{name}",
            name=name,
            h=hashlib.sha256(token.encode()).digest(),
            t=world.clock()
            if world.app.engine.dialect.name == "postgresql"
            else format_time(world.clock()),
        )
    # 2. The approvers' enrolled keys replaced by the attacker's.
    for name, key in attacker.items():
        await _sql(
            world,
            "UPDATE team_members SET public_key = :k WHERE approver_id = :a AND team_id = :t",
            k=raw_key(key),
            a=name,
            t=world.team_id,
        )
    # 3. Two invitation.accepted events carrying those keys, chained, and the head moved.
    members = {
        str(r[0]): str(r[1])
        for r in await _sql(
            world,
            "SELECT approver_id, invitation_id FROM team_members WHERE team_id = :t",
            t=world.team_id,
        )
    }
    forged_seq = await _append_forged(
        world,
        [
            (
                "invitation.accepted",
                f"approver:{name}",
                [f"team:{world.team_id}", f"approver:{name}"],
                {
                    "invitation_id": members[name],
                    "team_id": world.team_id,
                    "version": 1,
                    "public_key": raw_key(key).hex(),
                },
            )
            for name, key in attacker.items()
        ],
    )

    # The attacker's tokens authenticate nobody: the rows carry no MAC by the log key.
    for token in tokens.values():
        with pytest.raises(Unauthenticated):
            await world.app.identities.authenticate(token)
    # Votes signed with the attacker's keys (as if authenticated) are refused: the enrolled
    # key's row was not written by the server.
    current = (await world.app.sessions.get_session(world.admin, sid)).session
    for name, key in attacker.items():
        with pytest.raises(FailedPrecondition) as refused:
            await world.app.sessions.vote(
                world.approver(name),
                sid,
                VoteDecision.APPROVE,
                "",
                key.sign(vote_digest(current, VoteDecision.APPROVE)),
                "",
            )
        assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    # Nothing is appended after events the server did not write, whatever the use case.
    with pytest.raises(FailedPrecondition) as stopped:
        await world.app.vaults.create_vault(world.owner, "", "after-forgery", 7, 35, {}, "")
    assert stopped.value.reason == "LOG_NOT_AUTHENTIC"
    # So the session is not approved, access is not granted, and no proof exists.
    after = (await world.app.sessions.get_session(world.admin, sid)).session
    assert after.state.value == "PENDING"
    assert not (
        await world.app.vaults.check_access(world.admin, arn, world.recovery.subject)
    ).allowed
    with pytest.raises(FailedPrecondition) as no_proof:
        await world.app.sessions.export_approval_proof(world.recovery, sid)
    assert no_proof.value.reason == "SESSION_NOT_APPROVED"
    # VerifyLog, against the checkpoint taken before, names the first forged event; the
    # server signs no checkpoint over the forged head.
    verified = await world.app.audit.verify_log(world.auditor, 0, 0, before)
    assert not verified.ok
    assert verified.finding is not None
    assert (verified.finding.seq, verified.finding.problem) == (forged_seq, Problem.UNSIGNED)
    assert "was not written by this server" in verified.finding.description
    assert not verified.head.signature
    with pytest.raises(FailedPrecondition) as unsigned:
        await world.app.audit.checkpoint(world.auditor)
    assert unsigned.value.reason == "LOG_NOT_AUTHENTIC"


@pytest.mark.parametrize("column", ["public_key", "invitation_state", "approver_id"])
async def test_an_edited_member_row_is_not_used(world: World, column: str) -> None:
    """Any column of a member row the MAC covers: changed, the team cannot be read or voted
    with; the rows of other teams and the log stay usable."""
    _, sid = await _restore_request(world)
    values = {
        "public_key": ("public_key = :v", raw_key(Ed25519PrivateKey.generate())),
        "invitation_state": ("invitation_state = :v", "DECLINED"),
        "approver_id": ("approver_id = :v", "dave"),
    }
    assignment, value = values[column]
    await _sql(
        world,
        f"UPDATE team_members SET {assignment} WHERE approver_id = 'alice' AND team_id = :t",
        v=value,
        t=world.team_id,
    )
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.teams.get_team(world.admin, world.team_id)
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    if column != "approver_id":
        with pytest.raises(FailedPrecondition) as vote:
            await world.vote("alice", sid)
        assert vote.value.reason == "RECORD_NOT_AUTHENTIC"


async def test_a_copied_or_unrevoked_credential_does_not_authenticate(world: World) -> None:
    """A MAC is bound to its row: copied onto another row, or the row's revocation undone,
    it no longer verifies."""
    issued = await world.app.identities.issue_credential(
        world.admin, PrincipalKind.AUDITOR, "ann", "", None, ""
    )
    token = issued.token
    assert (await world.app.identities.authenticate(token)).principal.kind is PrincipalKind.AUDITOR
    # Copy its MAC onto a row of the attacker's, with a token the attacker knows.
    mine = f"airlock_{secrets.token_urlsafe(24)}"
    await _sql(
        world,
        "INSERT INTO credentials (credential_id, principal_kind, subject, description, token_hash,"
        " create_time, expire_time, revoke_time, mac) SELECT 'cred-copy', 'admin', '', "
        "description, :h, create_time, expire_time, revoke_time, mac FROM credentials "
        "WHERE credential_id = :id",
        h=hashlib.sha256(mine.encode()).digest(),
        id=issued.credential.credential_id,
    )
    with pytest.raises(Unauthenticated):
        await world.app.identities.authenticate(mine)
    # Make the auditor an admin in place.
    await _sql(
        world,
        "UPDATE credentials SET principal_kind = 'admin' WHERE credential_id = :id",
        id=issued.credential.credential_id,
    )
    # As a server that has not verified the token since (its cache holds what it verified).
    assert world.app.deps.credentials is not None
    world.app.deps.credentials.drop([issued.credential.credential_id])
    with pytest.raises(Unauthenticated):
        await world.app.identities.authenticate(token)


async def test_the_subject_index_is_checked_against_the_chain(world: World) -> None:
    """Issue 9 point 7: a row inserted in event_subjects is refused by ListEvents(subject) and
    named by VerifyLog; a deleted one is named by VerifyLog."""
    assert world.app.audit is not None
    _, sid = await _restore_request(world)
    await world.vote("alice", sid)
    subject = f"session:{sid}"
    page = await world.app.audit.list_events(world.auditor, EventQuery(subject=subject), 0, 50, "")
    listed = [e.seq for e in page.items]
    assert listed
    unrelated = min(listed) - 1  # an event of the log that does not name the session
    await _sql(
        world, "INSERT INTO event_subjects (subject, seq) VALUES (:s, :q)", s=subject, q=unrelated
    )
    with pytest.raises(FailedPrecondition) as inserted:
        await world.app.audit.list_events(world.auditor, EventQuery(subject=subject), 0, 50, "")
    assert inserted.value.reason == "RECORD_NOT_AUTHENTIC"
    verified = await world.app.audit.verify_log(world.auditor, 0, 0, None)
    assert verified.finding is not None
    assert (verified.finding.seq, verified.finding.problem) == (
        unrelated,
        Problem.SUBJECTS_MISMATCH,
    )

    await drop_guards(world.app.engine)
    await _sql(
        world, "DELETE FROM event_subjects WHERE subject = :s AND seq = :q", s=subject, q=unrelated
    )
    assert (await world.app.audit.verify_log(world.auditor, 0, 0, None)).ok
    hidden = listed[-1]
    await _sql(
        world, "DELETE FROM event_subjects WHERE subject = :s AND seq = :q", s=subject, q=hidden
    )
    verified = await world.app.audit.verify_log(world.auditor, 0, 0, None)
    assert verified.finding is not None
    assert (verified.finding.seq, verified.finding.problem) == (hidden, Problem.SUBJECTS_MISMATCH)
    assert subject in verified.finding.description


@pytest_asyncio.fixture
async def grpc_server(world: World) -> AsyncIterator[str]:
    app = world.app
    assert app.audit is not None
    # A refusal budget the flood below does not exhaust: every refusal is recorded, as when
    # many principals are refused (the per-principal rate limit is not what keeps proofs small).
    served = build_server(
        UseCases(app.identities, app.teams, app.sessions, app.vaults, app.audit),
        "127.0.0.1:0",
        limits=Limits.of(refusal_burst=1000),
    )
    await served.server.start()
    try:
        yield f"127.0.0.1:{served.port}"
    finally:
        await served.server.stop(None)


async def _token(world: World, kind: PrincipalKind, subject: str) -> tuple[tuple[str, str]]:
    issued = await world.app.identities.issue_credential(world.admin, kind, subject, "", None, "")
    return (("authorization", f"Bearer {issued.token}"),)


async def test_refusals_do_not_grow_an_earlier_proof(world: World, grpc_server: str) -> None:
    """Issue 9 point 5, scaled down (200 refusals instead of 8,000, each with a 2,000-character
    resource): the proof exported after the flood is byte for byte the proof exported before,
    and each refusal's event is bounded whatever the caller sent."""
    _, sid = await _restore_request(world)
    await world.vote("alice", sid)
    await world.vote("bob", sid)
    proof = await world.app.sessions.export_approval_proof(world.recovery, sid)
    assert len(proof) < 64 * 1024

    intruder = await _token(world, PrincipalKind.SERVICE, "intruder")  # the team is not shared
    auditor = await _token(world, PrincipalKind.AUDITOR, "ann")
    async with grpc.aio.insecure_channel(grpc_server) as channel:
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        for i in range(200):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sessions.StartSession(
                    session_service_pb2.StartSessionRequest(
                        team_id=world.team_id,
                        action="app:Deploy",
                        protected_resource=f"{i:04d}" + "r" * 1996,
                        comment="x" * 200,
                    ),
                    metadata=intruder,
                )
            assert refused.value.code() in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        audit = audit_service_pb2_grpc.AuditServiceStub(channel)
        denied = await audit.ListEvents(
            audit_service_pb2.ListEventsRequest(type="call.denied", page_size=500),
            metadata=auditor,
        )
    assert len(denied.events) == 200
    for e in denied.events:
        assert len(e.canonical) < 1024, len(e.canonical)
        assert all(len(s) <= 128 for s in e.subjects)
    long_resource = next(s for s in denied.events[0].subjects if "sha256:" in s)
    assert long_resource.startswith("0000rrrr")
    assert hashlib.sha256(("0000" + "r" * 1996).encode()).hexdigest() in long_resource

    again = await world.app.sessions.export_approval_proof(world.recovery, sid)
    assert again == proof


async def test_the_log_rehashes_from_list_events_alone(world: World, grpc_server: str) -> None:
    """Issue 9 point 8: each event's canonical bytes come with it; SHA-256 of them is its hash,
    each links to the one before, details keep their integers, and every event is covered by
    a head signed with the log key."""
    _, sid = await _restore_request(world)
    await world.vote("alice", sid)
    await world.vote("bob", sid)
    world.clock.advance(timedelta(seconds=1))
    auditor = await _token(world, PrincipalKind.AUDITOR, "ann")
    assert world.log_key is not None
    log_key = Ed25519PublicKey.from_public_bytes(world.log_key.public_key)
    events: list[Any] = []
    async with grpc.aio.insecure_channel(grpc_server) as channel:
        audit = audit_service_pb2_grpc.AuditServiceStub(channel)
        token = ""
        while True:
            page = await audit.ListEvents(
                audit_service_pb2.ListEventsRequest(page_size=7, page_token=token),
                metadata=auditor,
            )
            events.extend(page.events)
            token = page.next_page_token
            if not token:
                break
    assert len(events) > 20
    prev = bytes(32)
    integers = 0
    uncovered: list[int] = []
    for e in events:
        assert hashlib.sha256(e.canonical).digest() == e.hash, e.seq
        document = json.loads(e.canonical)
        assert document["seq"] == e.seq
        assert bytes.fromhex(document["prev_hash"]) == e.prev_hash == prev
        assert document["type"] == e.type
        assert document["subjects"] == list(e.subjects)
        integers += sum(isinstance(v, int) for v in document["details"].values())
        uncovered.append(e.seq)
        if e.head_signature:
            signed_time = datetime.fromisoformat(document["time"])
            log_key.verify(e.head_signature, checkpoint_message(e.seq, e.hash, signed_time))
            uncovered = []
        prev = e.hash
    assert integers > 0  # e.g. a team version: an integer, not a double
    assert uncovered == []  # the last event closes a signed transaction


@pytest.mark.parametrize("edit", ["min_approvals", "approver_set", "vote", "grant"])
async def test_edited_session_vote_and_grant_rows_are_not_used(world: World, edit: str) -> None:
    """The rows a vote and CheckAccess decide with: M lowered to 1, an approver added to the
    frozen set, a vote row inserted, a pending grant made AVAILABLE. Each is refused, never
    counted: no approval with one vote, no access."""
    arn, sid = await _restore_request(world)
    if edit == "min_approvals":
        await _sql(world, "UPDATE sessions SET min_approvals = 1 WHERE session_id = :s", s=sid)
    elif edit == "approver_set":
        await _sql(
            world,
            "INSERT INTO session_approvers (session_id, approver_id, position) "
            "VALUES (:s, 'dave', 9)",
            s=sid,
        )
    elif edit == "vote":
        postgres = world.app.engine.dialect.name == "postgresql"
        await _sql(
            world,
            "INSERT INTO votes (session_id, approver_id, position, decision, comment, vote_time,"
            " signature) VALUES (:s, 'bob', 5, 'APPROVE', '', :t, :sig)",
            s=sid,
            t=world.clock() if postgres else format_time(world.clock()),
            sig=bytes(64),
        )
    else:
        await _sql(
            world,
            "UPDATE restore_access_grants SET state = 'AVAILABLE' WHERE session_id = :s",
            s=sid,
        )
        with pytest.raises(FailedPrecondition) as denied:
            await world.app.vaults.check_access(world.admin, arn, world.recovery.subject)
        assert denied.value.reason == "RECORD_NOT_AUTHENTIC"
        return
    with pytest.raises(FailedPrecondition) as refused:
        await world.vote("alice", sid)
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    access = await world.app.vaults.check_access(world.admin, arn, world.recovery.subject)
    assert not access.allowed


async def test_a_lowered_m_of_the_team_is_not_frozen_into_new_sessions(world: World) -> None:
    """A team version's M, lowered to 1 through SQL, would let one approver approve every
    session opened after: the version's row is refused instead."""
    arn = await world.vault()
    await _sql(
        world, "UPDATE team_versions SET min_approvals = 1 WHERE team_id = :t", t=world.team_id
    )
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    assert await world.app.count("sessions") == 0


async def test_a_vault_moved_to_another_team_is_refused(world: World) -> None:
    """A vault's team is who approves its restores: moved through SQL to a team of the
    attacker's choosing, the vault is refused, and no session is opened."""
    other = await world.make_team("others", ("carol", "dave", "erin"))
    arn = await world.vault()
    await _sql(world, "UPDATE vaults SET team_id = :t WHERE vault_arn = :a", t=other, a=arn)
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    assert await world.app.count("sessions") == 0


async def test_an_approver_re_enabled_through_sql_cannot_vote_or_sign_in(world: World) -> None:
    """A disabled approver's row set back to enabled through SQL: no credential is issued to
    it, no session freezes it as a voter, and it still cannot vote on an open one."""
    _, sid = await _restore_request(world)
    other = await world.vault("second")
    await world.app.identities.disable_approver(world.admin, "alice", "")
    await _sql(
        world,
        "UPDATE approvers SET enabled = :e, disable_time = NULL WHERE approver_id = 'alice'",
        e=True,
    )
    with pytest.raises(FailedPrecondition) as sign_in:
        await world.app.identities.issue_credential(
            world.admin, PrincipalKind.APPROVER, "alice", "", None, ""
        )
    assert sign_in.value.reason == "RECORD_NOT_AUTHENTIC"
    with pytest.raises(FailedPrecondition) as new_session:
        await world.app.vaults.request_restore_access(world.recovery, other, "", "again", "")
    assert new_session.value.reason == "RECORD_NOT_AUTHENTIC"
    with pytest.raises(FailedPrecondition) as vote:
        await world.vote("alice", sid)
    assert vote.value.reason == "APPROVER_DISABLED"  # left out of the session's MACed row
    after = (await world.app.sessions.get_session(world.admin, sid)).session
    assert after.state.value == "PENDING"


async def test_a_team_rolled_back_through_sql_is_refused(world: World) -> None:
    """A team's `current_version` set back to an older version (with its own authentic rows):
    the team's row is refused, and no session is opened on the old rules."""
    arn = await world.vault()
    _, upd = await world.app.teams.update_team(
        world.admin, world.team_id, "", TeamUpdate(description="v2"), ""
    )
    await world.vote("alice", upd.session.session_id)
    await world.vote("bob", upd.session.session_id)
    assert (await world.app.teams.get_team(world.admin, world.team_id)).current.version == 2
    await _sql(world, "UPDATE teams SET current_version = 1 WHERE team_id = :t", t=world.team_id)
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.teams.get_team(world.admin, world.team_id)
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    before = await world.app.count("sessions")
    with pytest.raises(FailedPrecondition) as request:
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    assert request.value.reason == "RECORD_NOT_AUTHENTIC"
    assert await world.app.count("sessions") == before


async def test_a_share_inserted_through_sql_gives_no_access(world: World) -> None:
    """A share row for an unshared account, inserted through SQL: the account neither lists
    nor reads the team, nor associates a vault with it (so requests no access through it)."""
    postgres = world.app.engine.dialect.name == "postgresql"
    await _sql(
        world,
        "INSERT INTO team_shares (team_id, principal_kind, subject, create_time) "
        "VALUES (:t, 'account', :s, :c)",
        t=world.team_id,
        s=world.stranger.subject,
        c=world.clock() if postgres else format_time(world.clock()),
    )
    with pytest.raises(FailedPrecondition) as listed:
        await world.app.teams.list_teams(world.stranger, None, 10, "")
    assert listed.value.reason == "RECORD_NOT_AUTHENTIC"
    vault = await world.app.vaults.create_vault(world.stranger, "", "mine", 7, 35, {}, "")
    with pytest.raises(FailedPrecondition) as associated:
        await world.app.vaults.associate(world.stranger, vault.vault_arn, world.team_id, "", "")
    assert associated.value.reason == "RECORD_NOT_AUTHENTIC"
    with pytest.raises(FailedPrecondition) as requested:
        await world.app.vaults.request_restore_access(
            world.stranger, vault.vault_arn, "", "help", ""
        )
    assert requested.value.reason == "NO_TEAM_ASSOCIATED"  # the association never happened
    with pytest.raises(FailedPrecondition) as read:
        await world.app.teams.get_team(world.stranger, world.team_id)
    assert read.value.reason == "RECORD_NOT_AUTHENTIC"
    assert await world.app.count("sessions") == 0


async def test_an_edited_account_row_is_refused(world: World) -> None:
    """An account renamed through SQL: every read of it is refused."""
    await _sql(
        world, "UPDATE accounts SET name = 'mallory' WHERE account_id = :a", a=world.owner.subject
    )
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.identities.list_accounts(world.admin, 10, "")
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
    with pytest.raises(FailedPrecondition) as issued:
        await world.app.identities.issue_credential(
            world.admin, PrincipalKind.ACCOUNT, world.owner.subject, "", None, ""
        )
    assert issued.value.reason == "RECORD_NOT_AUTHENTIC"
    with pytest.raises(FailedPrecondition) as vault:
        await world.app.vaults.create_vault(world.owner, "", "after-edit", 7, 35, {}, "")
    assert vault.value.reason == "RECORD_NOT_AUTHENTIC"


async def test_an_edited_team_deletion_is_refused(world: World) -> None:
    """A requested deletion's pending window shortened through SQL: the deletion's row is
    refused wherever it is read (GetApprovalTeam shows it)."""
    await world.app.teams.start_team_deletion(world.admin, world.team_id, "", 7, "")
    await _sql(
        world,
        "UPDATE team_deletions SET pending_window_days = 0 WHERE team_id = :t",
        t=world.team_id,
    )
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.teams.get_team_view(world.admin, world.team_id)
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"

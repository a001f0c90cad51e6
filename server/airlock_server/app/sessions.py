"""Approval sessions: generic guarded operations, votes, cancellation and expiry.

A session's effect (a grant made AVAILABLE, an association changed, a grant revoked) happens in
the same transaction as the state change that causes it, whoever causes it: the last vote, a
cancellation, the expiry sweeper or a read that finds the session expired. Each kind's effect
lives beside what it changes (app/vaults.py, app/teams.py); `effects()` is the table.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from airlock_server.app import passkey_uses, signing
from airlock_server.app.ballots import ALONE, Ballot, Ballots, Refused
from airlock_server.app.common import (
    Deps,
    Done,
    RefuseAfter,
    check_request_id,
    request_fingerprint,
    request_scope,
    run_once,
    transact,
)
from airlock_server.app.feed import EventFeed, SharedReads, finished_read
from airlock_server.app.ports import (
    Claim,
    EventLogReader,
    EventSignal,
    LogAnchor,
    SessionQuery,
    TimeCursor,
    UnitOfWork,
)
from airlock_server.domain.errors import (
    QUORUM_UNREACHABLE,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from airlock_server.domain.events import Event
from airlock_server.domain.health import Activity, activity_of_vote
from airlock_server.domain.paging import Page, decode_cursor, decode_token, page_size, time_page
from airlock_server.domain.principals import (
    SYSTEM,
    Principal,
    PrincipalKind,
    missing_or_denied,
    require,
)
from airlock_server.domain.proofs import (
    approval_events,
    build_proof,
    no_log_key_for_proofs,
    require_approved,
)
from airlock_server.domain.session_events import (
    session_completed,
    session_created,
    session_ended,
    session_executed,
    vote_cast,
)

# Re-exported: tests name a session's subject through this module.
from airlock_server.domain.session_events import session_subject as session_subject
from airlock_server.domain.sessions import (
    ExecutionStatus,
    Session,
    SessionKind,
    SessionState,
    SessionStatus,
    TeamDraft,
    VoteDecision,
    cancel,
    cast_vote,
    complete,
    exclude_approver,
    new_session,
    not_session_approver,
    not_session_requester,
    settle_expired,
    vote_digest,
)
from airlock_server.domain.teams import InvitationState, Team, TeamState
from airlock_server.domain.webauthn import is_passkey_key

T = TypeVar("T")

SWEEP_BATCH = 100
# Without an event signal, how often a watcher reads the session again; with one, the safety
# bound of each wait (a missed notification costs at most this much delay).
WATCH_INTERVAL = 0.5
# A watched session's expiry writes no event until someone settles it: a watcher waits at most
# until the expiry (and this much more), then its read settles the session.
EXPIRY_GRACE = 0.05


@dataclass(frozen=True)
class SessionView:
    """A session with its team's name, as the API shows it."""

    session: Session
    team_name: str


# What a session's end does to the thing it is about (a grant, a vault's team, the team itself),
# in the transaction that ends it: given the session just become final, the session to save
# (executed, when the effect ran). Each lives beside what it changes.
Effect = Callable[["SessionService", UnitOfWork, Session], Awaitable[Session]]


@functools.cache
def effects() -> Mapping[SessionKind, Effect]:
    """The table from a session kind to its effect; a kind without one (GENERIC) has none.
    Read at the first session's end, not at import: those modules open their sessions
    through this one."""
    from airlock_server.app.teams import TEAM_EFFECTS
    from airlock_server.app.vaults import VAULT_EFFECTS

    return {**TEAM_EFFECTS, **VAULT_EFFECTS}


def can_see(caller: Principal, session: Session, vault_owner: str | None) -> bool:
    """Who may read a session (GetSession, WatchSession)."""
    if caller.kind in (PrincipalKind.ADMIN, PrincipalKind.AUDITOR):
        return True
    if caller == session.requester:
        return True
    if caller.kind is PrincipalKind.APPROVER:
        return caller.subject in session.approver_ids
    if caller.kind is PrincipalKind.ACCOUNT:
        return vault_owner == caller.subject
    return False


class SessionService:
    def __init__(
        self,
        deps: Deps,
        watch_interval: float = WATCH_INTERVAL,
        anchor: LogAnchor | None = None,
        *,
        log: EventLogReader | None = None,
        signal: EventSignal | None = None,
        feed: EventFeed | None = None,
    ) -> None:
        self._deps = deps
        self._watch_interval = watch_interval
        # Watchers follow the event log's feed (every change to a session appends an event);
        # without one (or a log and its signal to make one), they poll every watch_interval.
        if feed is None and log is not None and signal is not None:
            feed = EventFeed(log, signal, watch_interval)
        self._feed = feed
        # Watchers of a session woken by the same event read it once (per caller: what a
        # caller may see is checked in the read).
        self._watch_reads: SharedReads[tuple[str, str, int], SessionView] = SharedReads()
        self._anchor = anchor  # signs the proofs' log checkpoints; None: no proofs
        # This process's votes, written a batch per transaction (app/ballots.py).
        self._ballots: Ballots[SessionView] = Ballots(self._cast_batch)

    # --- loading ------------------------------------------------------------------------

    def _expiry_guard(self, session_id: str, error: DomainError) -> Exception:
        """A call refused because the session expired writes the expiry down first."""
        if error.reason == Reason.SESSION_EXPIRED:
            return RefuseAfter(error, lambda: self.settle(session_id))
        return error

    async def _load(
        self,
        uow: UnitOfWork,
        session_id: str,
        *,
        for_update: bool = False,
        caller: Principal | None = None,
        denied: PermissionDenied | None = None,
    ) -> Session:
        """The session; an unknown id answers `denied` to a caller who could not see it anyway
        (missing_or_denied), NOT_FOUND to admin, auditor and the server itself."""
        session = await uow.sessions.get(session_id, for_update=for_update)
        if session is None:
            missing = NotFound("session", session_id)
            if caller is None or denied is None:
                raise missing
            raise missing_or_denied(caller, missing, denied)
        return session

    async def _load_visible(self, uow: UnitOfWork, caller: Principal, session_id: str) -> Session:
        """A session the caller may read (GetSession, WatchSession, ExportApprovalProof)."""
        s = await self._load(uow, session_id, caller=caller, denied=_not_visible(session_id))
        await self._check_visible(uow, caller, s)
        return s

    async def views(self, uow: UnitOfWork, sessions: Sequence[Session]) -> list[SessionView]:
        names = await uow.teams.names([s.team_id for s in sessions])
        return [SessionView(s, names.get(s.team_id, "")) for s in sessions]

    async def view(self, uow: UnitOfWork, session: Session) -> SessionView:
        return (await self.views(uow, [session]))[0]

    async def _read(self, uow: UnitOfWork, session_id: str) -> SessionView:
        return await self.view(uow, await self._load(uow, session_id))

    # --- opening sessions (also for the vault use cases) ---------------------------------

    async def open_session(
        self,
        uow: UnitOfWork,
        *,
        kind: SessionKind,
        team: Team,
        requester: Principal,
        protected_resource: str,
        comment: str = "",
        metadata: Mapping[str, str] | None = None,
        action: str | None = None,
        session_id: str | None = None,
        approver_ids: Sequence[str] | None = None,
        min_approvals: int | None = None,
        draft: TeamDraft | None = None,
    ) -> Session:
        """A PENDING session voted by the accepted approvers of the team's current version
        (or by `approver_ids` among them, needing `min_approvals`: a baseline)."""
        if team.state is not TeamState.ACTIVE:
            raise FailedPrecondition(
                f"approval team {team.team_id} is {team.state.value}; only an ACTIVE team "
                "votes on sessions",
                reason=Reason.TEAM_NOT_ACTIVE,
                metadata={"teamId": team.team_id, "state": team.state.value},
            )
        version = team.current
        accepted = [
            m.approver_id for m in version.members if m.invitation_state is InvitationState.ACCEPTED
        ]
        voters = list(accepted if approver_ids is None else approver_ids)
        m = version.min_approvals if min_approvals is None else min_approvals
        # A disabled approver is no voter: it is left out of the frozen set.
        identities = await uow.approvers.get_many(voters)
        disabled = [a for a in voters if a in identities and not identities[a].enabled]
        if disabled:
            voters = [a for a in voters if a not in disabled]
            if len(voters) < m:
                raise FailedPrecondition(
                    f"approvers {', '.join(disabled)} of team {team.team_id} are disabled: "
                    f"{len(voters)} can still vote, M = {m}",
                    reason=QUORUM_UNREACHABLE,
                    metadata={"teamId": team.team_id, "disabled": ",".join(disabled)},
                )
        session = new_session(
            session_id=session_id or self._deps.new_id("ses"),
            kind=kind,
            team_id=team.team_id,
            team_version=version.version,
            approver_ids=voters,
            min_approvals=m,
            requester=requester,
            protected_resource=protected_resource,
            now=self._deps.clock(),
            ttl=version.session_ttl,
            action=action,
            comment=comment,
            metadata=metadata,
            draft=draft,
        )
        await uow.sessions.add(session)
        uow.record(session_created(session))
        return session

    # --- outcomes and their effects -----------------------------------------------------

    async def store_outcome(
        self, uow: UnitOfWork, before: Session, after: Session, actor: Principal
    ) -> Session:
        """Save `after`; if it just became final, record it and run its effect, same tx."""
        if after.is_final and not before.is_final:
            uow.record(session_ended(after, actor))
            after = await self._apply_effect(uow, after)
        await uow.sessions.save(after)
        return after

    def now(self) -> datetime:
        return self._deps.clock()

    async def executed(self, uow: UnitOfWork, s: Session, ok: bool, message: str) -> Session:
        now = self._deps.clock()
        done = complete(
            s, ExecutionStatus.EXECUTED if ok else ExecutionStatus.FAILED, now, message[:256]
        )
        uow.record(session_executed(done, ok))
        return done

    async def _apply_effect(self, uow: UnitOfWork, s: Session) -> Session:
        effect = effects().get(s.kind)
        return s if effect is None else await effect(self, uow, s)

    async def end_pending_of_team(
        self,
        uow: UnitOfWork,
        team_id: str,
        status: SessionStatus,
        *,
        below_version: int | None = None,
        exclude: str = "",
    ) -> int:
        now = self._deps.clock()
        ended = 0
        for session_id in await uow.sessions.pending_of_team(team_id):
            if session_id == exclude:
                continue
            before = await self._load(uow, session_id, for_update=True)
            if before.state is not SessionState.PENDING:
                continue
            if below_version is not None and before.team_version >= below_version:
                continue
            after = cancel(before, None, now, status)
            await self.store_outcome(uow, before, after, SYSTEM)
            ended += 1
        return ended

    async def exclude_approver(
        self, uow: UnitOfWork, approver_id: str, actor: Principal
    ) -> list[str]:
        """The approver was disabled: on every pending session of its frozen set it votes no
        more and its vote stops counting; a session whose M became unreachable fails now (with
        its undo effect). Returns the sessions changed."""
        now = self._deps.clock()
        query = SessionQuery(state=SessionState.PENDING, visible_approver=approver_id)
        found: list[str] = []
        after: TimeCursor | None = None
        while True:
            page = await uow.sessions.list_page(query, now, after, SWEEP_BATCH)
            found += [s.session_id for s in page]
            if len(page) < SWEEP_BATCH:
                break
            after = (page[-1].create_time, page[-1].session_id)
        changed: list[str] = []
        for session_id in found:
            before = await self._load(uow, session_id, for_update=True)
            after_exclusion = exclude_approver(before, approver_id, now)
            if after_exclusion is not before:
                await self.store_outcome(uow, before, after_exclusion, actor)
                changed.append(session_id)
        return changed

    async def settle(self, session_id: str) -> SessionView:
        """Write down the expiry of a session found expired (read time, refused calls)."""

        async def work(uow: UnitOfWork) -> SessionView:
            before = await self._load(uow, session_id, for_update=True)
            after = settle_expired(before, self._deps.clock())
            if after is not before:
                after = await self.store_outcome(uow, before, after, SYSTEM)
                await uow.commit()
            return await self.view(uow, after)

        return await transact(self._deps, work)

    # --- generic guarded operations -----------------------------------------------------

    async def start_session(
        self,
        caller: Principal,
        team_id: str,
        action: str,
        protected_resource: str,
        metadata: Mapping[str, str],
        comment: str,
        request_id: str,
    ) -> SessionView:
        require(caller, PrincipalKind.SERVICE)

        async def act(uow: UnitOfWork) -> Done[SessionView]:
            team = await uow.teams.get(team_id)
            if team is None or team.state is TeamState.DELETED:
                raise missing_or_denied(
                    caller, NotFound("approval team", team_id), _not_shared(team_id, caller)
                )
            if await uow.shares.get(team_id, caller) is None:
                raise _not_shared(team_id, caller)
            session = await self.open_session(
                uow,
                kind=SessionKind.GENERIC,
                team=team,
                requester=caller,
                protected_resource=protected_resource,
                comment=comment,
                metadata=metadata,
                action=action,
            )
            return Done(session.session_id)

        return await run_once(self._deps, caller, "StartSession", request_id, act, self._read)

    async def complete_session(
        self,
        caller: Principal,
        session_id: str,
        execution_status: ExecutionStatus,
        message: str,
        request_id: str,
    ) -> SessionView:
        require(caller, PrincipalKind.SERVICE)

        async def act(uow: UnitOfWork) -> Done[SessionView]:
            before = await self._load(
                uow, session_id, for_update=True, caller=caller, denied=_not_starter(session_id)
            )
            if before.requester != caller or before.kind is not SessionKind.GENERIC:
                raise _not_starter(session_id)
            after = complete(before, execution_status, self._deps.clock(), message)
            await uow.sessions.save(after)
            uow.record(session_completed(after, caller))
            return Done(session_id)

        return await run_once(self._deps, caller, "CompleteSession", request_id, act, self._read)

    # --- reading -------------------------------------------------------------------------

    async def _check_visible(self, uow: UnitOfWork, caller: Principal, s: Session) -> None:
        owner: str | None = None
        if caller.kind is PrincipalKind.ACCOUNT and caller != s.requester:
            vault = await uow.vaults.get(s.protected_resource)
            owner = vault.account_id if vault else None
        if not can_see(caller, s, owner):
            raise _not_visible(s.session_id)

    async def export_approval_proof(self, caller: Principal, session_id: str) -> bytes:
        """The approval proof of an APPROVED session (docs/approval-proofs.md).

        Who may export it: whoever may read the session (GetSession).
        """

        anchor = self._anchor

        async def work(uow: UnitOfWork) -> tuple[Session, dict[str, bytes | None], list[Event]]:
            s = await self._load_visible(uow, caller, session_id)
            require_approved(s)
            # Never an unanchored proof: without a signed checkpoint a verifier could not tell
            # it from one a forger made up, keys and all.
            if anchor is None or not anchor.can_sign:
                raise no_log_key_for_proofs()
            keys = await uow.teams.enrolled_keys(s.team_id, s.team_version)
            events = approval_events(await uow.events.about(session_subject(s.session_id)))
            # For each approver of the snapshot, the event in which it enrolled that key.
            accepted = await uow.events.about(f"team:{s.team_id}", "invitation.accepted")
            seen = {e.seq for e in events}
            for approver_id in s.approver_ids:
                key = keys.get(approver_id)
                enrolled = [
                    e
                    for e in accepted
                    if f"approver:{approver_id}" in e.subjects
                    and key is not None
                    and e.details.get("public_key") == key.hex()
                ]
                if enrolled and enrolled[-1].seq not in seen:
                    events.append(enrolled[-1])
                    seen.add(enrolled[-1].seq)
            return s, keys, events

        s, keys, events = await transact(self._deps, work)
        assert anchor is not None  # checked in work()
        # The head the server signed when it appended the approval, and the chain from the
        # proof's first event up to it: whatever the log holds after, the proof is the same.
        signed = await anchor.anchor(min(e.seq for e in events), max(e.seq for e in events))
        return build_proof(s, keys, events, signed)

    async def get_session(self, caller: Principal, session_id: str) -> SessionView:
        async def work(uow: UnitOfWork) -> tuple[SessionView, bool]:
            s = await self._load_visible(uow, caller, session_id)
            return await self.view(uow, s), s.is_expired_at(self._deps.clock())

        # The session, its team's name, votes and approvers are one statement (one snapshot);
        # the vault read for an owner's visibility needs none in common with it.
        view, expired = await transact(self._deps, work, one_statement=True, hot=True)
        if expired:
            # Read-time expiry writes the decision down, with its effect.
            return await self.settle(session_id)
        return view

    async def list_sessions(
        self, caller: Principal, query: SessionQuery, size: int, token: str
    ) -> Page[SessionView]:
        require(
            caller,
            PrincipalKind.ADMIN,
            PrincipalKind.AUDITOR,
            PrincipalKind.ACCOUNT,
            PrincipalKind.APPROVER,
            PrincipalKind.SERVICE,
        )
        if query.requester_account_id and not query.requester_account_id.isdigit():
            raise InvalidArgument.field("requester_account_id", "an account id is 12 digits")
        if caller.kind is PrincipalKind.ACCOUNT:
            query = replace(query, visible_account=caller.subject)
        elif caller.kind is PrincipalKind.APPROVER:
            query = replace(query, visible_approver=caller.subject)
        elif caller.kind is PrincipalKind.SERVICE:
            query = replace(query, visible_requester=caller)
        return await self._page(caller, "ListSessions", query, size, token)

    async def list_assigned(
        self,
        caller: Principal,
        state: SessionState | None,
        awaiting_vote: bool,
        size: int,
        token: str,
    ) -> Page[SessionView]:
        require(caller, PrincipalKind.APPROVER)
        query = (
            SessionQuery(awaiting_vote_of=caller.subject)
            if awaiting_vote
            else SessionQuery(state=state, visible_approver=caller.subject)
        )
        return await self._page(caller, "ListAssignedSessions", query, size, token)

    async def _page(
        self, caller: Principal, method: str, query: SessionQuery, size: int, token: str
    ) -> Page[SessionView]:
        limit = page_size(size)
        bound = {"m": method, "c": str(caller), "q": repr(query)}
        after = decode_cursor(decode_token(token, bound))
        now = self._deps.clock()

        async def work(uow: UnitOfWork) -> Page[SessionView]:
            rows = await uow.sessions.list_page(query, now, after, limit + 1)
            page = time_page(rows, limit, lambda s: (s.create_time, s.session_id), bound)
            # What a read sees is what the settled session would say; the sweeper writes it.
            items = [settle_expired(s, now) for s in page.items]
            return Page(tuple(await self.views(uow, items)), page.next_page_token)

        return await transact(self._deps, work, read_only=True)

    async def watch(self, caller: Principal, session_id: str) -> AsyncGenerator[SessionView, None]:
        """The session now and after every change, until it is final (and executed)."""
        # Every change to a session appends an event naming it: the watcher reads the session
        # again only when the process's feed hands it one (or at its expiry, or the slow
        # safety interval). Subscribed before the first read, so no change falls between.
        # Without a feed, the watcher reads the session at each of those bounds (it polls).
        subject = session_subject(session_id)
        subscription = (
            await self._feed.subscribe(
                lambda e: subject in e.subjects or e.details.get("session_id") == session_id
            )
            if self._feed is not None
            else None
        )
        try:
            last: SessionView | None = None
            woken_by: int | None = None  # the last event that woke this watcher
            while True:
                view = await self._watch_read(caller, session_id, woken_by)
                if view != last:
                    yield view
                    last = view
                s = view.session
                if s.is_final and s.execution_status is not ExecutionStatus.PENDING:
                    return
                if subscription is None:
                    await asyncio.sleep(self._until_expiry(s))
                    continue
                arrived = await subscription.next(self._until_expiry(s))
                woken_by = arrived[-1].seq if arrived else None
        finally:
            if subscription is not None:
                subscription.close()

    async def _watch_read(
        self, caller: Principal, session_id: str, woken_by: int | None
    ) -> SessionView:
        """The session for a watcher. Woken by event `woken_by`, it shares the read of the
        caller's other watchers woken by that event (a read started after that event was
        handed out, so it sees it); otherwise (the first read, an expiry, a poll) a read of
        its own."""
        if woken_by is None:
            return await finished_read(self.get_session(caller, session_id))
        return await self._watch_reads.read(
            (session_id, str(caller), woken_by), lambda: self.get_session(caller, session_id)
        )

    def _until_expiry(self, s: Session) -> float:
        within = self._watch_interval
        if s.state is SessionState.PENDING:
            left = (s.expire_time - self._deps.clock()).total_seconds()
            within = min(within, max(left, 0.0) + EXPIRY_GRACE)
        return within

    # --- votes and cancellation ----------------------------------------------------------

    async def vote(
        self,
        caller: Principal,
        session_id: str,
        decision: VoteDecision,
        comment: str,
        signature: bytes,
        request_id: str,
        *,
        channel: str = "",
    ) -> SessionView:
        """`channel`: where the vote came from when not the API ("portal"), for the event.

        Cast with the other votes this process receives meanwhile, in one transaction
        (_cast_batch); alone when the batch says so (_vote_alone)."""
        require(caller, PrincipalKind.APPROVER)
        check_request_id(request_id)
        fingerprint = request_fingerprint.get()
        ballot: Ballot[SessionView] = Ballot(
            caller, session_id, decision, comment, signature, request_id, fingerprint, channel
        )
        answer = await self._ballots.cast(ballot)
        if isinstance(answer, Refused):
            raise answer.error
        if answer is ALONE:
            return await self._vote_alone(ballot)
        assert isinstance(answer, SessionView)
        return answer

    def _checked_vote(
        self,
        before: Session,
        key: bytes | None,
        voter: str,
        decision: VoteDecision,
        comment: str,
        signature: bytes,
        now: datetime,
    ) -> tuple[Session, bytes]:
        """The session with the vote cast, its signature checked against the voter's enrolled
        key (returned with it); or the DomainError that refuses it."""
        after = cast_vote(before, voter, decision, comment, signature, now)
        if not signature:
            raise InvalidArgument.field(
                "signature", "required: an Ed25519 signature over the vote digest"
            )
        if key is None:
            raise FailedPrecondition(
                f"approver {voter!r} enrolled no key in team version {before.team_version}",
                reason=Reason.NO_KEY_ENROLLED,
                metadata={"sessionId": before.session_id},
            )
        signing.verify(key, signature, vote_digest(before, decision), "signature")
        return after, key

    async def _store_vote(
        self, uow: UnitOfWork, b: Ballot[SessionView], before: Session, after: Session
    ) -> Session:
        """A checked vote's event and outcome (the deciding vote's effect), as written."""
        uow.record(vote_cast(b.caller, b.session_id, b.decision, b.comment, b.signature, b.channel))
        return await self.store_outcome(uow, before, after, b.caller)

    async def _cast_batch(self, ballots: list[Ballot[SessionView]]) -> None:
        """One transaction for the votes of `ballots` (one per session and request_id): the
        sessions locked and read together, every vote checked before anything is written,
        the request_ids claimed and the votes inserted by one statement each, each vote's
        event and outcome, one commit. Answers each ballot (app/ballots.py)."""
        answers: list[tuple[Ballot[SessionView], SessionView]] = []
        async with self._deps.uow() as uow:
            found = await uow.sessions.lock_for_votes(
                {b.session_id: b.caller.subject for b in ballots}
            )
            now = self._deps.clock()
            checked: list[tuple[Ballot[SessionView], Session, Session]] = []
            for b in ballots:
                try:
                    if b.session_id not in found:
                        raise missing_or_denied(
                            b.caller,
                            NotFound("session", b.session_id),
                            not_session_approver(b.session_id, b.caller.subject),
                        )
                    before, enrolled = found[b.session_id]
                    after, key = self._checked_vote(
                        before, enrolled, b.caller.subject, b.decision, b.comment, b.signature, now
                    )
                except DomainError as err:
                    # Refused here, unless its request_id may name an earlier call (whose
                    # answer a replay gets) or the refusal writes something down (an expired
                    # session is settled): those are cast alone.
                    if not b.request_id and err.reason != Reason.SESSION_EXPIRED:
                        b.answer.set_result(Refused(err))
                    continue
                if not is_passkey_key(key):  # a passkey's use is counted alone, with its vote
                    checked.append((b, before, after))
            claimed = await uow.idempotency.claim_many(
                [
                    Claim(
                        request_scope(b.caller, "Vote"), b.request_id, b.fingerprint, b.session_id
                    )
                    for b, _, _ in checked
                    if b.request_id
                ],
                now,
            )
            # A request_id claimed before names an earlier call: cast alone, it is answered
            # as that call was (or refused as REQUEST_ID_REUSED).
            checked = [
                c
                for c in checked
                if not c[0].request_id
                or (request_scope(c[0].caller, "Vote"), c[0].request_id) in claimed
            ]
            await uow.sessions.add_votes([after for _, _, after in checked])
            # The deciding votes' effects: their grants read in one statement, the sessions'
            # and grants' UPDATEs sent together (a read in an effect sends them first).
            deciding = [after.session_id for _, _, after in checked if after.is_final]
            if deciding:
                await uow.grants.lock_by_sessions(deciding)
            uow.sessions.defer_saves()
            uow.grants.defer_saves()
            written = [await self._store_vote(uow, b, bef, aft) for b, bef, aft in checked]
            await uow.sessions.flush()
            await uow.grants.flush()
            await uow.activity.record_many(
                [
                    (before.team_id, b.caller.subject, Activity(activity_of_vote(before.kind), now))
                    for b, before, _ in checked
                ]
            )
            views = await self.views(uow, written)
            await uow.commit()
            answers = [(b, view) for (b, _, _), view in zip(checked, views, strict=True)]
        for b, view in answers:
            b.answer.set_result(view)

    async def _vote_alone(self, b: Ballot[SessionView]) -> SessionView:
        """A vote in a transaction of its own."""
        caller, session_id, signature = b.caller, b.session_id, b.signature

        async def act(uow: UnitOfWork) -> Done[SessionView]:
            # The session, locked, and the voter's enrolled key: one read.
            found = await uow.sessions.get_for_vote(session_id, caller.subject)
            if found is None:
                raise missing_or_denied(
                    caller,
                    NotFound("session", session_id),
                    not_session_approver(session_id, caller.subject),
                )
            before, enrolled = found
            now = self._deps.clock()
            try:
                after, key = self._checked_vote(
                    before, enrolled, caller.subject, b.decision, b.comment, signature, now
                )
            except DomainError as err:
                raise self._expiry_guard(session_id, err) from None
            if is_passkey_key(key):
                await passkey_uses.count_vote(uow, key, signature, caller.subject, now)
            written = await self._store_vote(uow, b, before, after)
            await uow.activity.record(
                before.team_id, caller.subject, Activity(activity_of_vote(before.kind), now)
            )
            # The session in hand is what was written; a replay reads it.
            return Done(session_id, await self.view(uow, written))

        # Vote's result is the session id, known before the work: claimed with it (once).
        return await run_once(
            self._deps, caller, "Vote", b.request_id, act, self._read, known=session_id
        )

    async def cancel_session(
        self, caller: Principal, session_id: str, request_id: str
    ) -> SessionView:
        async def act(uow: UnitOfWork) -> Done[SessionView]:
            before = await self._load(
                uow,
                session_id,
                for_update=True,
                caller=caller,
                denied=not_session_requester(session_id),
            )
            try:
                after = cancel(before, caller, self._deps.clock())
            except DomainError as err:
                raise self._expiry_guard(session_id, err) from None
            await self.store_outcome(uow, before, after, caller)
            return Done(session_id)

        return await run_once(self._deps, caller, "CancelSession", request_id, act, self._read)

    # --- background ----------------------------------------------------------------------

    async def pending_summary(self) -> tuple[int, float]:
        """How many sessions wait for votes, and the age in seconds of the oldest (0: none);
        for the operator's metrics, not an RPC."""

        async def work(uow: UnitOfWork) -> tuple[int, datetime | None]:
            return await uow.sessions.pending_summary()

        count, oldest = await transact(self._deps, work, read_only=True)
        age = (self._deps.clock() - oldest).total_seconds() if oldest is not None else 0.0
        return count, max(age, 0.0)

    async def sweep_expired_sessions(self) -> int:
        """Settle pending sessions past their expiry. Safe on any number of replicas."""

        async def work(uow: UnitOfWork) -> int:
            now = self._deps.clock()
            settled = 0
            for session_id in await uow.sessions.pending_past_expiry(now, SWEEP_BATCH):
                before = await self._load(uow, session_id)
                after = settle_expired(before, now)
                if after is not before:
                    await self.store_outcome(uow, before, after, SYSTEM)
                    settled += 1
            await uow.commit()
            return settled

        return await transact(self._deps, work)


def _not_visible(session_id: str) -> PermissionDenied:
    return PermissionDenied(
        "the caller may not see this session", metadata={"sessionId": session_id}
    )


def _not_starter(session_id: str) -> PermissionDenied:
    return PermissionDenied(
        "only the service that started a generic session reports its result",
        metadata={"sessionId": session_id},
    )


def _not_shared(team_id: str, caller: Principal) -> PermissionDenied:
    return PermissionDenied(
        f"approval team {team_id} is not shared with {caller}",
        reason=Reason.TEAM_NOT_SHARED,
        metadata={"teamId": team_id, "principal": str(caller)},
    )

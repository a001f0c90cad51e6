"""The health report over all teams (`AirlockClient.health_report`, `airlock health`).

Composed on the client from existing RPCs, so it needs nothing the server does not already
offer to an admin or an auditor: ListApprovalTeams, then per team GetTeamHealth (the server's
verdict: active approvers, M, slack, status), ListSessions over the period (what was requested
and how it ended) and the team's latest baseline session (who has not answered it).

Session counts leave baselines out: a baseline approves nothing. `failed` counts sessions
rejected by the team; `expired` those that timed out (both are STATE_FAILED on the wire).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airlock.v1 import session_pb2, team_pb2

if TYPE_CHECKING:
    from airlock_client.client import AirlockClient

__all__ = [
    "DEFAULT_SINCE",
    "BaselineSummary",
    "HealthReport",
    "InactiveApprover",
    "SessionCounts",
    "TeamReport",
    "build_health_report",
]

DEFAULT_SINCE = dt.timedelta(days=30)
_PAGE = 1000

Session = session_pb2.Session
TeamHealth = team_pb2.TeamHealth


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _time(ts: Any) -> dt.datetime | None:
    """A set Timestamp as an aware datetime; None when unset (zero)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    value: dt.datetime = ts.ToDatetime(tzinfo=dt.UTC)
    return value


def _enum(enum: Any, number: int, prefix: str) -> str:
    return str(enum.Name(number)).removeprefix(prefix)


@dataclass(frozen=True)
class SessionCounts:
    """Sessions of one team created in the period (baselines left out), by outcome."""

    requested: int = 0
    approved: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requested": self.requested,
            "approved": self.approved,
            "failed": self.failed,
            "expired": self.expired,
            "cancelled": self.cancelled,
            "pending": self.pending,
        }


def count_sessions(sessions: Sequence[Session]) -> SessionCounts:
    counted = [s for s in sessions if s.kind != Session.KIND_BASELINE]

    def n(state: int, status: int | None = None) -> int:
        return sum(
            1 for s in counted if s.state == state and (status is None or s.status_code == status)
        )

    return SessionCounts(
        requested=len(counted),
        approved=n(Session.STATE_APPROVED),
        failed=n(Session.STATE_FAILED) - n(Session.STATE_FAILED, Session.STATUS_CODE_EXPIRED),
        expired=n(Session.STATE_FAILED, Session.STATUS_CODE_EXPIRED),
        cancelled=n(Session.STATE_CANCELLED),
        pending=n(Session.STATE_PENDING),
    )


@dataclass(frozen=True)
class InactiveApprover:
    """An approver of a team who does not count as active, and why."""

    team_id: str
    team_name: str
    approver_id: str
    reasons: tuple[str, ...]
    last_activity_kind: str
    last_activity_time: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "teamId": self.team_id,
            "teamName": self.team_name,
            "approverId": self.approver_id,
            "reasons": list(self.reasons),
            "lastActivityKind": self.last_activity_kind,
            "lastActivityTime": _iso(self.last_activity_time),
        }


def inactive_approvers(health: TeamHealth) -> list[InactiveApprover]:
    window = health.activity_window.ToTimedelta()
    out: list[InactiveApprover] = []
    for a in health.approvers:
        if a.active:
            continue
        reasons: list[str] = []
        if a.invitation_state != team_pb2.Invitation.STATE_ACCEPTED:
            state = _enum(team_pb2.Invitation.State, a.invitation_state, "STATE_")
            reasons.append(f"invitation {state}")
        if not a.identity_enabled:
            reasons.append("identity disabled")
        if not a.key_enrolled:
            reasons.append("no key enrolled")
        last = _time(a.last_activity_time)
        evaluated = _time(health.evaluate_time)
        if last is None:
            reasons.append("no recorded activity")
        elif evaluated is not None and evaluated - last > window:
            reasons.append(f"no activity within {_days(window)}")
        out.append(
            InactiveApprover(
                team_id=health.team_id,
                team_name=health.team_name,
                approver_id=a.approver_id,
                reasons=tuple(reasons),
                last_activity_kind=_enum(
                    team_pb2.ActivityKind, a.last_activity_kind, "ACTIVITY_KIND_"
                ),
                last_activity_time=last,
            )
        )
    return out


def _days(value: dt.timedelta) -> str:
    if value.total_seconds() % 86400 == 0:
        return f"{value.days}d"
    return f"{int(value.total_seconds() // 3600)}h"


@dataclass(frozen=True)
class BaselineSummary:
    """The team's latest baseline session and who of those asked has not answered it."""

    session_id: str
    state: str
    status: str
    create_time: dt.datetime | None
    asked: tuple[str, ...]
    not_answered: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "state": self.state,
            "status": self.status,
            "createTime": _iso(self.create_time),
            "asked": list(self.asked),
            "notAnswered": list(self.not_answered),
        }


def baseline_summary(session: Session) -> BaselineSummary:
    voted = {v.approver_id for v in session.votes}
    return BaselineSummary(
        session_id=session.session_id,
        state=_enum(Session.State, session.state, "STATE_"),
        status=_enum(Session.StatusCode, session.status_code, "STATUS_CODE_"),
        create_time=_time(session.create_time),
        asked=tuple(session.approver_ids),
        not_answered=tuple(a for a in session.approver_ids if a not in voted),
    )


@dataclass(frozen=True)
class TeamReport:
    """One team: its state, the server's health verdict, its sessions, its last baseline."""

    team_id: str
    name: str
    state: str
    health: TeamHealth
    sessions: SessionCounts
    inactive: tuple[InactiveApprover, ...]
    baseline: BaselineSummary | None

    @property
    def status(self) -> str:
        return _enum(TeamHealth.Status, self.health.status, "STATUS_")

    @property
    def at_risk(self) -> bool:
        """An ACTIVE team whose slack is 0 or below (AT_RISK or UNHEALTHY)."""
        return (
            self.state == "ACTIVE"
            and self.health.status != TeamHealth.STATUS_HEALTHY
            and self.health.status != TeamHealth.STATUS_UNSPECIFIED
        )

    def as_dict(self) -> dict[str, Any]:
        h = self.health
        return {
            "teamId": self.team_id,
            "name": self.name,
            "state": self.state,
            "status": self.status,
            "teamVersion": h.team_version,
            "activeApprovers": h.active_approvers,
            "minApprovals": h.min_approvals,
            "numberOfApprovers": h.number_of_approvers,
            "slack": h.slack,
            "quorumReachable": h.quorum_reachable,
            "sessions": self.sessions.as_dict(),
            "inactiveApprovers": [a.approver_id for a in self.inactive],
            "lastBaseline": self.baseline.as_dict() if self.baseline else None,
        }


@dataclass(frozen=True)
class HealthReport:
    """The report over all teams the caller may see (admin or auditor)."""

    generate_time: dt.datetime
    period_start: dt.datetime
    since: dt.timedelta
    activity_window: dt.timedelta | None
    teams: tuple[TeamReport, ...] = field(default_factory=tuple)

    @property
    def teams_at_risk(self) -> tuple[TeamReport, ...]:
        return tuple(t for t in self.teams if t.at_risk)

    @property
    def inactive_approvers(self) -> tuple[InactiveApprover, ...]:
        return tuple(a for t in self.teams for a in t.inactive)

    def as_dict(self) -> dict[str, Any]:
        """The `airlock health --json` document (camelCase keys, RFC 3339 UTC times)."""
        window = self.teams[0].health.activity_window.ToTimedelta() if self.teams else None
        window = self.activity_window or window
        return {
            "generateTime": _iso(self.generate_time),
            "periodStart": _iso(self.period_start),
            "sinceSeconds": int(self.since.total_seconds()),
            "activityWindowSeconds": int(window.total_seconds()) if window else None,
            "teamsAtRisk": [
                {
                    "teamId": t.team_id,
                    "name": t.name,
                    "status": t.status,
                    "activeApprovers": t.health.active_approvers,
                    "minApprovals": t.health.min_approvals,
                    "slack": t.health.slack,
                }
                for t in self.teams_at_risk
            ],
            "inactiveApprovers": [a.as_dict() for a in self.inactive_approvers],
            "teams": [t.as_dict() for t in self.teams],
        }


async def build_health_report(
    client: AirlockClient,
    *,
    since: dt.timedelta = DEFAULT_SINCE,
    activity_window: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> HealthReport:
    """Every team the caller sees (all but DELETED), with its health, its sessions created
    since `now - since` and its latest baseline. Admin or auditor credentials."""
    if since <= dt.timedelta(0):
        raise ValueError("since must be a positive duration")
    generated = now or dt.datetime.now(dt.UTC)
    start = generated - since
    reports: list[TeamReport] = []
    async for team in client.list_teams(page_size=_PAGE):
        health = await client.get_team_health(team.team_id, activity_window=activity_window)
        sessions = [
            s
            async for s in client.list_sessions(
                team_id=team.team_id, create_time_start=start, page_size=_PAGE
            )
        ]
        baselines = client.list_sessions(
            team_id=team.team_id, kind=Session.KIND_BASELINE, page_size=1
        )
        latest = await anext(baselines, None)  # newest first: one page of one is enough
        await baselines.aclose()  # type: ignore[attr-defined]
        baseline = baseline_summary(latest) if latest is not None else None
        reports.append(
            TeamReport(
                team_id=team.team_id,
                name=team.name,
                state=_enum(team_pb2.ApprovalTeam.State, team.state, "STATE_"),
                health=health,
                sessions=count_sessions(sessions),
                inactive=tuple(inactive_approvers(health)),
                baseline=baseline,
            )
        )
    return HealthReport(
        generate_time=generated,
        period_start=start,
        since=since,
        activity_window=activity_window,
        teams=tuple(reports),
    )

"""Team health: can a team still reach its quorum with the approvers who still respond?

An approver counts as *active* when its invitation into the version in force is ACCEPTED, its
identity is enabled, it enrolled a key, and its last activity for the team (an invitation answer,
a vote, a baseline answer) lies within the activity window (90 days by default; the window's
edge is inclusive: activity exactly `window` ago still counts). Then, with M the version's
min_approvals:

    slack = active - M;   HEALTHY if slack > 0,  AT_RISK if slack == 0,  UNHEALTHY if slack < 0

A baseline (StartTeamBaseline) is a session that chosen approvers answer to show they respond:
its M is the number of chosen approvers, so it is APPROVED once all answered and FAILS EXPIRED
otherwise; approving it has no effect. Answering is an APPROVE vote (a REJECT is refused, see
domain.sessions.cast_vote). Pure, stdlib only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from airlock_server.domain.errors import FieldViolation, InvalidArgument
from airlock_server.domain.sessions import SessionKind
from airlock_server.domain.teams import InvitationState, Team, TeamVersion

DEFAULT_ACTIVITY_WINDOW = timedelta(days=90)
MIN_ACTIVITY_WINDOW = timedelta(hours=1)
MAX_ACTIVITY_WINDOW = timedelta(days=3650)


class ActivityKind(enum.Enum):
    """What an approver last did for a team that shows it still responds."""

    RESPONDED_TO_INVITATION = "RESPONDED_TO_INVITATION"
    VOTED = "VOTED"
    BASELINED = "BASELINED"


@dataclass(frozen=True)
class Activity:
    kind: ActivityKind
    time: datetime


class HealthStatus(enum.Enum):
    HEALTHY = "HEALTHY"
    AT_RISK = "AT_RISK"
    UNHEALTHY = "UNHEALTHY"


@dataclass(frozen=True)
class ApproverHealth:
    approver_id: str
    invitation_state: InvitationState
    identity_enabled: bool
    key_enrolled: bool
    last_activity: Activity | None
    active: bool


@dataclass(frozen=True)
class TeamHealth:
    team_id: str
    team_name: str
    team_version: int
    status: HealthStatus
    active_approvers: int
    min_approvals: int
    number_of_approvers: int
    slack: int
    quorum_reachable: bool
    activity_window: timedelta
    approvers: tuple[ApproverHealth, ...]
    evaluate_time: datetime


def activity_of_vote(kind: SessionKind) -> ActivityKind:
    """A vote on a baseline session is a baseline answer; any other vote is a vote."""
    return ActivityKind.BASELINED if kind is SessionKind.BASELINE else ActivityKind.VOTED


def latest(current: Activity | None, new: Activity) -> Activity:
    """The later of two activities; on a tie the newer record wins."""
    if current is None or new.time >= current.time:
        return new
    return current


def activity_window(window: timedelta | None) -> timedelta:
    """The request's window, or the default; 1 hour .. 3650 days."""
    if window is None:
        return DEFAULT_ACTIVITY_WINDOW
    if not MIN_ACTIVITY_WINDOW <= window <= MAX_ACTIVITY_WINDOW:
        raise InvalidArgument.field("activity_window", "must be between 1 hour and 3650 days")
    return window


def within(activity: Activity | None, window: timedelta, now: datetime) -> bool:
    """Whether the activity is recent enough: at most `window` before `now` (inclusive)."""
    return activity is not None and now - activity.time <= window


def status_of(slack: int) -> HealthStatus:
    if slack > 0:
        return HealthStatus.HEALTHY
    if slack == 0:
        return HealthStatus.AT_RISK
    return HealthStatus.UNHEALTHY


def team_health(
    team: Team,
    enabled: Mapping[str, bool],
    activity: Mapping[str, Activity],
    window: timedelta,
    now: datetime,
) -> TeamHealth:
    """The health of the version in force. `enabled`: identity state per approver (an
    approver missing from it counts as disabled); `activity`: last activity per approver."""
    version = team.current
    approvers: list[ApproverHealth] = []
    for m in version.members:
        last = activity.get(m.approver_id)
        is_enabled = enabled.get(m.approver_id, False)
        key_enrolled = m.public_key is not None
        active = (
            m.invitation_state is InvitationState.ACCEPTED
            and is_enabled
            and key_enrolled
            and within(last, window, now)
        )
        approvers.append(
            ApproverHealth(
                approver_id=m.approver_id,
                invitation_state=m.invitation_state,
                identity_enabled=is_enabled,
                key_enrolled=key_enrolled,
                last_activity=last,
                active=active,
            )
        )
    active_count = sum(1 for a in approvers if a.active)
    slack = active_count - version.min_approvals
    return TeamHealth(
        team_id=team.team_id,
        team_name=team.name,
        team_version=version.version,
        status=status_of(slack),
        active_approvers=active_count,
        min_approvals=version.min_approvals,
        number_of_approvers=len(version.members),
        slack=slack,
        quorum_reachable=slack >= 0,
        activity_window=window,
        approvers=tuple(approvers),
        evaluate_time=now,
    )


def baseline_approvers(version: TeamVersion, chosen: Sequence[str]) -> tuple[str, ...]:
    """Who a baseline asks: the chosen approvers, each an accepted member of the version in
    force, or every accepted member when none is chosen."""
    accepted = tuple(
        m.approver_id for m in version.members if m.invitation_state is InvitationState.ACCEPTED
    )
    if not chosen:
        return accepted
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for i, approver_id in enumerate(chosen):
        if approver_id in seen:
            violations.append(FieldViolation(f"approver_ids[{i}]", "approvers must be distinct"))
        elif approver_id not in accepted:
            violations.append(
                FieldViolation(
                    f"approver_ids[{i}]",
                    f"{approver_id!r} is not an approver who accepted the team's version "
                    f"{version.version}",
                )
            )
        seen.add(approver_id)
    if violations:
        raise InvalidArgument(violations)
    return tuple(chosen)

"""Team health to its proto message. No rules here, only shapes."""

from __future__ import annotations

from airlock.v1 import team_pb2
from airlock_server.domain.health import ApproverHealth, HealthStatus, TeamHealth
from airlock_server.transport.convert import activity_kind_pb, dur, invitation_state_pb, ts

_STATUSES = {
    HealthStatus.HEALTHY: team_pb2.TeamHealth.STATUS_HEALTHY,
    HealthStatus.AT_RISK: team_pb2.TeamHealth.STATUS_AT_RISK,
    HealthStatus.UNHEALTHY: team_pb2.TeamHealth.STATUS_UNHEALTHY,
}


def _approver_health_pb(a: ApproverHealth) -> team_pb2.ApproverHealth:
    return team_pb2.ApproverHealth(
        approver_id=a.approver_id,
        invitation_state=invitation_state_pb(a.invitation_state),
        identity_enabled=a.identity_enabled,
        key_enrolled=a.key_enrolled,
        last_activity_kind=activity_kind_pb(a.last_activity),
        last_activity_time=ts(a.last_activity.time) if a.last_activity else None,
        active=a.active,
    )


def team_health_pb(h: TeamHealth) -> team_pb2.TeamHealth:
    return team_pb2.TeamHealth(
        team_id=h.team_id,
        team_name=h.team_name,
        team_version=h.team_version,
        status=_STATUSES[h.status],
        active_approvers=h.active_approvers,
        min_approvals=h.min_approvals,
        number_of_approvers=h.number_of_approvers,
        slack=h.slack,
        quorum_reachable=h.quorum_reachable,
        activity_window=dur(h.activity_window),
        approvers=[_approver_health_pb(a) for a in h.approvers],
        evaluate_time=ts(h.evaluate_time),
    )

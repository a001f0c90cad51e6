"""The client-side health report: session counts, inactive approvers, baselines, the CLI."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2

from airlock.v1 import session_pb2, team_pb2
from airlock_cli import build_parser
from airlock_client.health import (
    DEFAULT_SINCE,
    HealthReport,
    TeamReport,
    baseline_summary,
    count_sessions,
    inactive_approvers,
)

S = session_pb2.Session
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def test_counts_by_outcome_leave_baselines_out() -> None:
    sessions = [
        S(state=S.STATE_APPROVED),
        S(state=S.STATE_FAILED, status_code=S.STATUS_CODE_REJECTED),
        S(state=S.STATE_FAILED, status_code=S.STATUS_CODE_EXPIRED),
        S(state=S.STATE_FAILED, status_code=S.STATUS_CODE_EXPIRED),
        S(state=S.STATE_CANCELLED, status_code=S.STATUS_CODE_CANCELLED_BY_USER),
        S(state=S.STATE_PENDING),
        S(kind=S.KIND_BASELINE, state=S.STATE_APPROVED),
    ]
    assert count_sessions(sessions).as_dict() == {
        "requested": 6,
        "approved": 1,
        "failed": 1,
        "expired": 2,
        "cancelled": 1,
        "pending": 1,
    }


def health() -> team_pb2.TeamHealth:
    A = team_pb2.ApproverHealth
    accepted = team_pb2.Invitation.STATE_ACCEPTED
    return team_pb2.TeamHealth(
        team_id="team-1",
        team_name="guardians",
        status=team_pb2.TeamHealth.STATUS_AT_RISK,
        active_approvers=2,
        min_approvals=2,
        number_of_approvers=5,
        activity_window=duration_pb2.Duration(seconds=90 * 86400),
        evaluate_time=ts(NOW),
        approvers=[
            A(approver_id="a", invitation_state=accepted, identity_enabled=True, active=True),
            A(
                approver_id="b",
                invitation_state=accepted,
                identity_enabled=True,
                key_enrolled=True,
                last_activity_kind=team_pb2.ACTIVITY_KIND_VOTE,
                last_activity_time=ts(NOW - dt.timedelta(days=91)),
            ),
            A(
                approver_id="c",
                invitation_state=accepted,
                identity_enabled=False,
                key_enrolled=True,
            ),
            A(approver_id="d", invitation_state=team_pb2.Invitation.STATE_PENDING),
            A(approver_id="e", invitation_state=accepted, identity_enabled=True, active=True),
        ],
    )


def test_inactive_approvers_say_why() -> None:
    found = {a.approver_id: a for a in inactive_approvers(health())}
    assert sorted(found) == ["b", "c", "d"]
    assert found["b"].reasons == ("no activity within 90d",)
    assert found["b"].last_activity_kind == "VOTE"
    assert found["c"].reasons == ("identity disabled", "no recorded activity")
    assert found["d"].reasons == (
        "invitation PENDING",
        "identity disabled",
        "no key enrolled",
        "no recorded activity",
    )


def test_a_baseline_names_who_did_not_answer() -> None:
    s = S(
        session_id="ses-1",
        kind=S.KIND_BASELINE,
        state=S.STATE_FAILED,
        status_code=S.STATUS_CODE_EXPIRED,
        approver_ids=["a", "b", "c"],
        votes=[session_pb2.Vote(approver_id="b")],
    )
    b = baseline_summary(s)
    assert (b.state, b.status, b.asked, b.not_answered) == (
        "FAILED",
        "EXPIRED",
        ("a", "b", "c"),
        ("a", "c"),
    )


def test_only_active_teams_below_slack_one_are_at_risk() -> None:
    h = health()
    at_risk = TeamReport("team-1", "guardians", "ACTIVE", h, count_sessions([]), (), None)
    pending = TeamReport("team-2", "new", "PENDING", h, count_sessions([]), (), None)
    fine = team_pb2.TeamHealth(status=team_pb2.TeamHealth.STATUS_HEALTHY)
    healthy = TeamReport("team-3", "ok", "ACTIVE", fine, count_sessions([]), (), None)
    report = HealthReport(
        NOW, NOW - DEFAULT_SINCE, DEFAULT_SINCE, None, (at_risk, pending, healthy)
    )
    assert [t.team_id for t in report.teams_at_risk] == ["team-1"]
    doc = report.as_dict()
    assert doc["teamsAtRisk"][0]["status"] == "AT_RISK"
    assert doc["activityWindowSeconds"] == 90 * 86400
    assert doc["periodStart"] == "2026-05-02T00:00:00Z"


def test_the_cli_parses_health_and_baseline() -> None:
    args = build_parser().parse_args(["health", "--since", "7d", "--window", "30d", "--json"])
    assert (args.since, args.window, args.json) == (
        dt.timedelta(days=7),
        dt.timedelta(days=30),
        True,
    )
    args = build_parser().parse_args(["health"])
    assert (args.since, args.window) == (DEFAULT_SINCE, None)
    args = build_parser().parse_args(
        ["teams", "baseline", "team-1", "--approver", "a", "--approver", "b", "--comment", "hi"]
    )
    assert (args.team_id, args.approvers, args.comment) == ("team-1", ["a", "b"], "hi")

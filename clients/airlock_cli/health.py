"""`airlock health`: every team's health, the teams at risk and the inactive approvers (admin,
auditor)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from airlock_cli.base import Group, add_command
from airlock_cli.output import Output
from airlock_cli.values import (
    duration_arg,
    format_duration,
)
from airlock_client.client import AirlockClient
from airlock_client.health import DEFAULT_SINCE, HealthReport


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "never"


def _health_lines(report: HealthReport) -> list[str]:
    """The readable `airlock health`: at-risk teams, inactive approvers, then every team."""
    window = report.as_dict()["activityWindowSeconds"]
    lines = [
        f"Health of {len(report.teams)} team(s) at {_when(report.generate_time)}; "
        f"sessions since {_when(report.period_start)} ({format_duration(report.since)}); "
        "activity window "
        + (format_duration(dt.timedelta(seconds=window)) if window is not None else "90d"),
        "",
    ]
    at_risk = report.teams_at_risk
    lines.append(f"Teams at risk: {len(at_risk) or 'none'}")
    for t in at_risk:
        h = t.health
        lines.append(
            f"  {t.name} ({t.team_id})  {t.status}: {h.active_approvers} active of "
            f"{h.number_of_approvers}, M = {h.min_approvals}, slack {h.slack}"
        )
    inactive = report.inactive_approvers
    lines.append("")
    lines.append(f"Inactive approvers: {len(inactive) or 'none'}")
    for a in inactive:
        last = (
            f"last {a.last_activity_kind} {_when(a.last_activity_time)}"
            if a.last_activity_time
            else "never active"
        )
        lines.append(f"  {a.team_name}  {a.approver_id}: {', '.join(a.reasons)} ({last})")
    lines.append("")
    if not report.teams:
        lines.append("no teams")
        return lines
    header = (
        "TEAM",
        "STATE",
        "HEALTH",
        "ACTIVE",
        "M",
        "SLACK",
        "REQUESTED",
        "APPROVED",
        "FAILED",
        "EXPIRED",
        "CANCELLED",
        "PENDING",
    )
    rows = [header] + [
        (
            t.name,
            t.state,
            t.status,
            f"{t.health.active_approvers}/{t.health.number_of_approvers}",
            str(t.health.min_approvals),
            str(t.health.slack),
            *(str(v) for v in t.sessions.as_dict().values()),
        )
        for t in report.teams
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    baselines = [t for t in report.teams if t.baseline is not None]
    if baselines:
        lines.append("")
        lines.append("Latest baselines:")
        for t in baselines:
            b = t.baseline
            assert b is not None
            missing = ", ".join(b.not_answered) or "nobody"
            lines.append(
                f"  {t.name}  {b.session_id}  {b.state}  {_when(b.create_time)}  "
                f"not answered: {missing}"
            )
    return lines


async def _health(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    report = await client.health_report(since=args.since, activity_window=args.window)
    if out.as_json:
        out.out.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        out.lines(_health_lines(report))


def add_commands(commands: Group) -> None:
    p = add_command(
        commands,
        "health",
        "health of every team: teams at risk, inactive approvers, sessions by outcome "
        "(admin, auditor)",
        _health,
    )
    p.add_argument(
        "--since",
        type=duration_arg,
        default=DEFAULT_SINCE,
        metavar="DURATION",
        help="count the sessions created in this period, e.g. 30d (default 30d)",
    )
    p.add_argument(
        "--window",
        type=duration_arg,
        metavar="DURATION",
        help="an approver is active if it acted within this window (default 90d)",
    )

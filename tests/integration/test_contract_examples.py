"""Examples a proto comment gives of what the server returns are what it returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from integration.harness import Harness

from airlock_server.domain.principals import Principal
from airlock_server.domain.teams import validate_team_spec

TEAM_PROTO = Path(__file__).resolve().parents[2] / "proto" / "airlock" / "v1" / "team.proto"


def documented_team_arn() -> str:
    """The example ARN of ApprovalTeam.arn's comment, `<team_id>` left as is."""
    text = TEAM_PROTO.read_text(encoding="utf-8")
    match = re.search(r"`(arn:aws:mpa:[^`]*approval-team/<team_id>)`", text)
    assert match, "ApprovalTeam.arn's comment lost its example"
    return match.group(1)


@pytest.mark.asyncio
async def test_a_team_arn_has_the_documented_shape(app: Harness, admin: Principal) -> None:
    for approver_id in ("alice", "bob"):
        await app.identities.create_approver(admin, approver_id, approver_id, "", "")
    spec = validate_team_spec(
        name="arn-shape",
        description="",
        approver_ids=["alice", "bob"],
        min_approvals=2,
        session_ttl=None,
        invitation_ttl=None,
    )
    team = await app.teams.create_team(admin, spec, "")
    example = documented_team_arn().replace("us-east-1", app.deps.region)
    assert team.arn == example.replace("<team_id>", team.team_id)

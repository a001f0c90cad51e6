"""`airlock teams invite-link`: the admin gets an invitation's one-time portal link from a real
server, shown once and never logged (issue 13)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.timeout(300)


def test_an_admin_issues_a_link_shown_once(server: ServerProcess) -> None:
    admin = server.write_token("admin", server.admin_token)
    approvers = [f"{name}-{secrets.token_hex(3)}" for name in ("kim", "lee")]
    for approver_id in approvers:
        server.cli_json(admin, "approvers", "create", approver_id, "--name", approver_id)
    team = server.cli_json(
        admin,
        "teams",
        "create",
        f"linked-{secrets.token_hex(3)}",
        *(arg for a in approvers for arg in ("--approver", a)),
        "--min-approvals",
        "2",
    )
    invitation = team["approvers"][0]["invitationId"]
    issued = server.cli_json(admin, "teams", "invite-link", invitation)
    assert len(issued["token"]) >= 43  # 256 bits, base64url
    assert issued["expireTime"]
    # The token is a secret: nothing in the log carries it.
    events = server.cli(admin, "--json", "audit", "list", "--type", "invitation.link_issued")
    assert events.returncode == 0, events.stderr
    assert invitation in events.stdout
    assert issued["token"] not in events.stdout
    # Only the admin issues links.
    approver_token = server.directory / f"{approvers[0]}.token"
    server.cli_json(
        admin,
        "credentials",
        "issue",
        "--kind",
        "approver",
        "--subject",
        approvers[0],
        "--token-out",
        str(approver_token),
    )
    refused = server.cli(approver_token, "teams", "invite-link", invitation)
    assert refused.returncode != 0
    assert "PERMISSION_DENIED" in refused.stderr

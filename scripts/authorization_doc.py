"""Write docs/authorization.md from the authorization table (tests/e2e/authorization_table.py).

    python scripts/authorization_doc.py           # rewrite docs/authorization.md
    python scripts/authorization_doc.py --check   # exit 1 if docs/authorization.md is stale

The table is the single source of truth: tests/e2e/test_authorization_matrix.py asserts it
against a real server, tests/unit/test_authorization_doc.py fails when the doc differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from generated_doc import write_or_check

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "authorization.md"
sys.path.insert(0, str(REPO / "tests"))

from e2e.authorization_table import (  # noqa: E402
    OK,
    PRINCIPALS,
    ROWS,
    SERVICES_IN_ORDER,
)

SHORT = {
    OK: "OK",
    "PERMISSION_DENIED": "DENIED",
    "UNAUTHENTICATED": "UNAUTH",
}

HEADER = """\
# Who may do what

Every RPC of the six `airlock.v1` services against every kind of caller, with the answer the
server gives to a valid request aimed at the object named in "target". Written by
`scripts/authorization_doc.py` from `tests/e2e/authorization_table.py`; do not edit by hand.
`tests/e2e/test_authorization_matrix.py` calls every RPC as every principal below against a
real server (SQLite and PostgreSQL) and asserts each cell, and that every refused call left the
database as it was (all tables except the event log and idempotency keys).

Cells: **OK**; **DENIED** = `PERMISSION_DENIED`; **UNAUTH** = `UNAUTHENTICATED`; any other
gRPC code is written out. Rules are checked in the app layer (`require(...)` and the
visibility checks of `server/airlock_server/app/*.py`); deny by default: a kind not named
is refused. Health and reflection answer anyone and are not listed.

## Principals

| column | who |
|---|---|
"""


UNKNOWN_IDS = """
## Unknown ids answer like ids the caller may not see

AIP-211 and AIP-193: a caller without permission gets `PERMISSION_DENIED` whether or not the
object exists, so no id can be probed. One rule for every call that names an object
(`missing_or_denied` in `server/airlock_server/domain/principals.py`):

- A caller who could not see the object were it there gets, for an id that names nothing, the
  very error (code, reason, message, metadata) an existing object it may not see answers. The
  check of who may act comes before anything about the object's state, so the refusal of an
  existing object says nothing more either (a vote's kind or state, a vault's team, a grant's
  vault).
- Admin and auditor see everything: an unknown id is `NOT_FOUND` (`<KIND>_NOT_FOUND`).
- Where the id itself decides the permission, the caller's own namespace answers `NOT_FOUND`: a
  vault ARN names its account, so an account gets `VAULT_NOT_FOUND` for an unknown ARN in its
  own account (`PERMISSION_DENIED` for any other account's). A team shared with the caller that
  is gone answers `NOT_FOUND` too. A service may ask CheckAccess about any vault, so an unknown
  ARN is `NOT_FOUND` for it.
- Invitation, session and grant ids are random and name no one: an unknown invitation id is
  `PERMISSION_DENIED` even for an approver (what another approver's invitation answers), an
  unknown session id for a non-reader is what a session it may not see answers (GetSession,
  WatchSession, ExportApprovalProof: `PERMISSION_DENIED`; Vote: `NOT_SESSION_APPROVER`;
  CancelSession: `NOT_SESSION_REQUESTER`; CompleteSession: `PERMISSION_DENIED`), and an
  unknown grant id for an account is `NOT_VAULT_OWNER` naming the grant only.

`tests/integration/recovery/test_unknown_ids.py` asserts this on SQLite and PostgreSQL.
"""


def render() -> str:
    out = [HEADER]
    for p in PRINCIPALS:
        out.append(f"| {p.title} | {p.who} |\n")
    out.append(UNKNOWN_IDS)
    heads = " | ".join(p.title for p in PRINCIPALS)
    rule = "|".join("---" for _ in range(len(PRINCIPALS) + 2))
    for service in SERVICES_IN_ORDER:
        rows = [r for r in ROWS if r.service == service]
        out.append(f"\n## {service}\n\n")
        out.append(f"| RPC | target | {heads} |\n|{rule}|\n")
        for row in rows:
            cells = " | ".join(
                SHORT.get(row.answers[p.key], row.answers[p.key]) for p in PRINCIPALS
            )
            target = row.target or "—"
            out.append(f"| {row.rpc} | {target} | {cells} |\n")
        notes = [r for r in rows if r.note]
        if notes:
            out.append("\n")
            for row in notes:
                where = f" — {row.target}" if row.target else ""
                out.append(f"- {row.rpc}{where}: {row.note}.\n")
    return "".join(out)


def main() -> int:
    return write_or_check(__doc__.splitlines()[0], DOC, render)


if __name__ == "__main__":
    sys.exit(main())

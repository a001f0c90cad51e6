"""Every limit a proto comment states is the one the server enforces.

The comments of proto/airlock/v1/*.proto are read field by field; each phrase of a known shape
("at most N characters", "1 to N characters", "pattern [...]{a,b}", "at most N entries; keys
a..b characters, values at most N characters", "a to b of them", "a min .. b days", "a .. b",
"a <= min", "max <= b", "values above N are coerced") becomes a limit of that field. Each
field with a limit has a driver below: the validation the server runs for it. The test drives it
with the boundary (accepted: no INVALID_ARGUMENT naming the field) and one past it (refused:
INVALID_ARGUMENT naming the field). A new limit in a comment without a driver fails, as does a
driver for a field whose comment no longer states one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from unit.test_team_changes_domain import active_team

from airlock_server.app.audit import _check_query, _check_signature
from airlock_server.app.common import check_request_id
from airlock_server.app.ports import EventQuery
from airlock_server.app.signing import check_public_key, verify
from airlock_server.domain.errors import DomainError, InvalidArgument, Reason
from airlock_server.domain.events import Checkpoint
from airlock_server.domain.health import activity_window
from airlock_server.domain.identities import (
    validate_account,
    validate_approver,
    validate_description,
)
from airlock_server.domain.notifications import (
    validate_description as validate_endpoint_description,
)
from airlock_server.domain.notifications import validate_url
from airlock_server.domain.paging import page_size
from airlock_server.domain.principals import Principal, PrincipalKind, validate_principal
from airlock_server.domain.sessions import (
    ExecutionStatus,
    SessionKind,
    complete,
    new_session,
    validate_comment,
)
from airlock_server.domain.team_changes import start_deletion
from airlock_server.domain.teams import validate_team_spec
from airlock_server.domain.vaults import validate_restore_request, validate_vault

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto" / "airlock" / "v1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Limit(NamedTuple):
    kind: str
    numbers: tuple[int, ...]


# Order matters: a phrase is removed once matched, so "keys 1..128" is not read as a range.
SHAPES: list[tuple[str, re.Pattern[str]]] = [
    (
        "map",
        re.compile(
            r"at most (\d+) entries; keys (\d+)\.\.(\d+) characters, values at most "
            r"(\d+) characters"
        ),
    ),
    ("duration", re.compile(r"(\d+) (min|h) \.\. (\d+) days")),
    ("pattern", re.compile(r"\[[^\]]+\]\{(\d+),(\d+)\}")),
    ("chars", re.compile(r"(\d+) to (\d+) characters")),
    ("max_chars", re.compile(r"at most (\d+) characters")),
    ("count", re.compile(r"(\d+) to (\d+) of them")),
    ("coerced", re.compile(r"values above (\d+) are coerced")),
    ("int_range", re.compile(r"(\d+) \.\. (\d+)")),
    ("quorum", re.compile(r"(\d+) <= M <= N\b")),
    ("int_min", re.compile(r"(\d+) <= min\b")),
    ("int_max", re.compile(r"\bmax <= (\d+)")),
    ("bytes", re.compile(r"(?:raw,? |\()(\d+) bytes")),
]
_FIELD = re.compile(r"^\s*(?:repeated |optional )?(?:map<[^>]+>|[\w.]+) (\w+) = \d+;")
_OPEN = re.compile(r"^\s*(message|enum|oneof|service) (\w+) \{")
_UNIT = {"min": timedelta(minutes=1), "h": timedelta(hours=1)}


def limits_of(comment: str) -> list[Limit]:
    found = []
    for kind, shape in SHAPES:
        for match in shape.finditer(comment):
            numbers = tuple(int(g) for g in match.groups() if g.isdigit())
            if kind == "duration":
                numbers = (int(match.group(1)), int(match.group(3)))
                kind_name = f"duration_{match.group(2)}"
            else:
                kind_name = kind
            found.append(Limit(kind_name, numbers))
        comment = shape.sub(" ", comment)
    return found


def stated_limits() -> dict[str, list[Limit]]:
    """`Message.field` -> the limits its comment states, over every airlock.v1 file."""
    stated: dict[str, list[Limit]] = {}
    for path in sorted(PROTO_DIR.glob("*.proto")):
        stack: list[tuple[str, str]] = []
        comment: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith("//"):
                comment.append(stripped.removeprefix("//").strip())
                continue
            opened = _OPEN.match(line)
            if opened:
                stack.append((opened.group(1), opened.group(2)))
            elif stripped.startswith("}"):
                stack.pop()
            else:
                field = _FIELD.match(line)
                messages = [name for kind, name in stack if kind == "message"]
                if field and messages and stack[-1][0] != "enum":
                    text = " ".join(comment)
                    found = limits_of(text)
                    if re.search(r"\bempty\b", text):  # "empty lets the server choose"
                        found = [
                            x._replace(kind="pattern_or_empty") if x.kind == "pattern" else x
                            for x in found
                        ]
                    if found:
                        stated[f"{messages[-1]}.{field.group(1)}"] = found
            comment = []
    return stated


STATED = stated_limits()


# --- the server's validation of each field ----------------------------------------------------


def _session(**overrides: Any) -> None:
    args: dict[str, Any] = {
        "session_id": "s1",
        "kind": SessionKind.GENERIC,
        "team_id": "t1",
        "team_version": 1,
        "approver_ids": ["a", "b"],
        "min_approvals": 2,
        "requester": Principal(PrincipalKind.SERVICE, "svc"),
        "protected_resource": "r",
        "now": T0,
        "ttl": timedelta(hours=1),
        "action": "deploy",
    }
    new_session(**(args | overrides))


def _complete(message: str) -> None:
    _session()
    session = new_session(
        session_id="s1",
        kind=SessionKind.GENERIC,
        team_id="t1",
        team_version=1,
        approver_ids=["a", "b"],
        min_approvals=2,
        requester=Principal(PrincipalKind.SERVICE, "svc"),
        protected_resource="r",
        now=T0,
        ttl=timedelta(hours=1),
        action="deploy",
    )
    complete(session, ExecutionStatus.EXECUTED, T0, message)


def _team(**overrides: Any) -> None:
    args: dict[str, Any] = {
        "name": "team",
        "description": "",
        "approver_ids": ["a", "b"],
        "min_approvals": 2,
        "session_ttl": None,
        "invitation_ttl": None,
    }
    validate_team_spec(**(args | overrides))


def _vault(**overrides: Any) -> None:
    args: dict[str, Any] = {
        "name": "vault",
        "min_retention_days": 7,
        "max_retention_days": 36500,
        "tags": {},
    }
    validate_vault(**(args | overrides))


def _min_retention(days: int) -> None:
    _vault(min_retention_days=days, max_retention_days=max(days, 7))


KEY = Ed25519PrivateKey.generate()


def _signed(signature: bytes, field: str) -> None:
    """A signature checked as the server checks one (verify): of the right length, a signature
    that does not verify is BAD_SIGNATURE, not a refusal of its length."""
    verify(KEY.public_key().public_bytes_raw(), signature, b"message", field)


def _subject(subject: str) -> None:
    """A free label (admin, auditor: may be empty) and a service name (never empty)."""
    validate_principal(PrincipalKind.ADMIN, subject)
    validate_principal(PrincipalKind.AUDITOR, subject)
    if subject:
        validate_principal(PrincipalKind.SERVICE, subject)
    elif not refused(lambda v: validate_principal(PrincipalKind.SERVICE, v), "", "subject"):
        raise AssertionError("a service principal without a name was accepted")


def _url(length: int) -> str:
    """An https URL of `length` characters (at least 16)."""
    return "https://h.test/" + "a" * (length - 15)


def _email(length: int) -> str:
    """An address of `length` characters: the longest local part, then the domain (or none)."""
    return "a" * 64 + "@" + "b" * (length - 65) if length else ""


Driver = Callable[[Any], object]
COMMENT: Driver = validate_comment
TEAM_NAME: Driver = lambda v: _team(name=v)  # noqa: E731
TEAM_DESCRIPTION: Driver = lambda v: _team(description=v)  # noqa: E731
SESSION_TTL: Driver = lambda v: _team(session_ttl=v)  # noqa: E731
INVITATION_TTL: Driver = lambda v: _team(invitation_ttl=v)  # noqa: E731
GENERIC_COMMENT: Driver = lambda v: _session(comment=v)  # noqa: E731
BASELINE_COMMENT: Driver = lambda v: _session(  # noqa: E731
    kind=SessionKind.BASELINE, action=None, comment=v, requester=Principal(PrincipalKind.ADMIN, "")
)
# M against a team of N = 3 approvers.
QUORUM: Driver = lambda v: _team(approver_ids=["a", "b", "c"], min_approvals=v)  # noqa: E731
ACTION: Driver = lambda v: _session(action=v)  # noqa: E731
APPROVER_ID: Driver = lambda v: validate_approver(v, "Name", "")  # noqa: E731
DISPLAY_NAME: Driver = lambda v: validate_approver("a", v, "")  # noqa: E731
ACCOUNT_NAME: Driver = lambda v: validate_account("123456789012", v)  # noqa: E731
VAULT_NAME: Driver = lambda v: _vault(name=v)  # noqa: E731

DRIVERS: dict[str, Driver] = {
    "*.request_id": check_request_id,
    "*.page_size": page_size,
    "Principal.subject": lambda v: _subject(v),
    "Approver.approver_id": APPROVER_ID,
    "Approver.display_name": DISPLAY_NAME,
    "CreateApproverRequest.approver_id": APPROVER_ID,
    "CreateApproverRequest.display_name": DISPLAY_NAME,
    "CreateApproverRequest.email": lambda v: validate_approver("a", "A", _email(len(v))),
    "Account.name": ACCOUNT_NAME,
    "RegisterAccountRequest.name": ACCOUNT_NAME,
    "Credential.description": validate_description,
    "IssueCredentialRequest.description": validate_description,
    "Vote.comment": COMMENT,
    "VoteRequest.comment": COMMENT,
    "Session.action": ACTION,
    "Session.comment": GENERIC_COMMENT,
    "StartSessionRequest.action": ACTION,
    "StartSessionRequest.protected_resource": lambda v: _session(protected_resource=v),
    "StartSessionRequest.metadata": lambda v: _session(metadata=v),
    "StartSessionRequest.comment": GENERIC_COMMENT,
    "CompleteSessionRequest.message": _complete,
    "ApprovalTeam.name": TEAM_NAME,
    "ApprovalTeam.description": TEAM_DESCRIPTION,
    "ApprovalTeam.session_ttl": SESSION_TTL,
    "ApprovalTeam.invitation_ttl": INVITATION_TTL,
    "CreateApprovalTeamRequest.name": TEAM_NAME,
    "CreateApprovalTeamRequest.description": TEAM_DESCRIPTION,
    "CreateApprovalTeamRequest.approver_ids": lambda v: _team(approver_ids=v),
    "CreateApprovalTeamRequest.min_approvals": QUORUM,
    "UpdateApprovalTeamRequest.min_approvals": QUORUM,
    "ApprovalTeam.min_approvals": QUORUM,
    "CreateApprovalTeamRequest.session_ttl": SESSION_TTL,
    "CreateApprovalTeamRequest.invitation_ttl": INVITATION_TTL,
    "UpdateApprovalTeamRequest.description": TEAM_DESCRIPTION,
    "UpdateApprovalTeamRequest.approver_ids": lambda v: _team(approver_ids=v),
    "UpdateApprovalTeamRequest.session_ttl": SESSION_TTL,
    "UpdateApprovalTeamRequest.invitation_ttl": INVITATION_TTL,
    "StartTeamDeletionRequest.pending_window_days": lambda v: start_deletion(
        active_team(), pending_window_days=v, session_id="s1", now=T0
    ),
    "StartTeamBaselineRequest.comment": BASELINE_COMMENT,
    "GetTeamHealthRequest.activity_window": activity_window,
    "Vault.name": VAULT_NAME,
    "Vault.min_retention_days": _min_retention,
    "Vault.max_retention_days": lambda v: _vault(max_retention_days=v),
    "CreateVaultRequest.name": VAULT_NAME,
    "CreateVaultRequest.min_retention_days": _min_retention,
    "CreateVaultRequest.max_retention_days": lambda v: _vault(max_retention_days=v),
    "CreateVaultRequest.tags": lambda v: _vault(tags=v),
    "AssociateApprovalTeamRequest.comment": COMMENT,
    "DisassociateApprovalTeamRequest.comment": COMMENT,
    "RequestRestoreAccessRequest.restore_vault_name": lambda v: validate_restore_request(v, ""),
    "RequestRestoreAccessRequest.comment": lambda v: validate_restore_request("restore", v),
    "RevokeRestoreAccessRequest.comment": COMMENT,
    "ListEventsRequest.type": lambda v: _check_query(EventQuery(type=v), 0),
    "ListEventsRequest.subject": lambda v: _check_query(EventQuery(subject=v), 0),
    "RespondToInvitationRequest.public_key": check_public_key,
    "TeamApprover.public_key": check_public_key,
    "LogCheckpoint.public_key": lambda v: _check_signature(
        Checkpoint(1, bytes(32), T0, signature=bytes(64), public_key=v)
    ),
    "RespondToInvitationRequest.key_proof": lambda v: _signed(v, "key_proof"),
    "VoteRequest.signature": lambda v: _signed(v, "signature"),
    "Vote.signature": lambda v: _signed(v, "signature"),
    # A URL of the given length (an empty one is refused as missing, not as too long).
    "NotificationEndpoint.url": lambda v: validate_url(_url(len(v))) if v else None,
    "NotificationEndpoint.description": validate_endpoint_description,
}


def driver_of(key: str) -> Driver | None:
    return DRIVERS.get(key) or DRIVERS.get("*." + key.split(".")[1])


def refused(driver: Driver, value: Any, field: str) -> bool:
    """Whether the server refuses `value` as INVALID_ARGUMENT naming `field`. Any other outcome
    (accepted, or refused for another field or another reason) means the limit let it pass."""
    try:
        driver(value)
    except InvalidArgument as err:
        if err.reason is not Reason.INVALID_ARGUMENT:
            return False  # refused for another rule (BAD_SIGNATURE): the limit let it pass
        return any(
            v.field == field or v.field.startswith(f"{field}[") or v.field.endswith(f".{field}")
            for v in err.violations
        )
    except DomainError:
        return False
    return False


def cases(limit: Limit) -> tuple[list[Any], list[Any]]:
    """(values at the boundary, values one past it) for a limit."""
    n = limit.numbers
    if limit.kind in ("max_chars",):
        return ["", "a" * n[0]], ["a" * (n[0] + 1)]
    if limit.kind in ("chars", "pattern"):
        low, high = n
        return ["a" * low, "a" * high], ["a" * (high + 1), *(["a" * (low - 1)] if low else [])]
    if limit.kind == "pattern_or_empty":
        return ["", "a" * n[0], "a" * n[1]], ["a" * (n[1] + 1)]
    if limit.kind == "count":
        low, high = n
        ids = [f"a{i}" for i in range(high + 1)]
        return [ids[:low], ids[:high]], [ids[: high + 1], ids[: low - 1]]
    if limit.kind == "map":
        entries, key_low, key_high, value_high = n
        full = {f"k{i}": "v" for i in range(entries)}
        ok = [full, {"k" * key_high: "v" * value_high}]
        bad = [full | {"one-more": "v"}, {"k" * (key_high + 1): "v"}, {"k": "v" * (value_high + 1)}]
        if key_low:
            bad.append({"": "v"})
        return ok, bad
    if limit.kind.startswith("duration_"):
        shortest = n[0] * _UNIT[limit.kind.removeprefix("duration_")]
        longest = timedelta(days=n[1])
        tick = timedelta(seconds=1)
        return [shortest, longest], [shortest - tick, longest + tick]
    if limit.kind == "int_range":
        return [n[0], n[1]], [n[0] - 1, n[1] + 1]
    if limit.kind == "int_min":
        return [n[0]], [n[0] - 1]
    if limit.kind == "int_max":
        return [n[0]], [n[0] + 1]
    if limit.kind == "quorum":
        return [n[0], 3], [n[0] - 1, 4]  # N = 3 in the QUORUM driver
    if limit.kind == "bytes":
        exact = KEY.public_key().public_bytes_raw() if n[0] == 32 else bytes(n[0])
        return [exact], [exact[:-1], exact + b"\0"]
    raise AssertionError(f"no cases for {limit}")


LIMITS = [
    (key, limit)
    for key, found in sorted(STATED.items())
    for limit in found
    if limit.kind != "coerced"
]
COERCED = [
    (key, limit)
    for key, found in sorted(STATED.items())
    for limit in found
    if limit.kind == "coerced"
]


def test_the_comments_were_read() -> None:
    assert Limit("max_chars", (200,)) in STATED["VoteRequest.comment"]
    assert Limit("chars", (1, 128)) in STATED["CreateApproverRequest.display_name"]
    assert Limit("map", (50, 1, 128, 256)) in STATED["CreateVaultRequest.tags"]
    assert Limit("duration_min", (15, 7)) in STATED["CreateApprovalTeamRequest.session_ttl"]
    assert len(STATED) > 40


def test_every_stated_limit_has_a_driver() -> None:
    assert [key for key in STATED if driver_of(key) is None] == []


def test_every_driver_checks_a_stated_limit() -> None:
    names = {key.split(".")[1] for key in STATED}
    stale = [k for k in DRIVERS if not (k in STATED or (k.startswith("*.") and k[2:] in names))]
    assert stale == []


@pytest.mark.parametrize(("key", "limit"), LIMITS, ids=[f"{k}:{x.kind}" for k, x in LIMITS])
def test_the_server_enforces_the_stated_limit(key: str, limit: Limit) -> None:
    driver = driver_of(key)
    assert driver is not None
    field = key.split(".")[1]
    inside, outside = cases(limit)
    for value in inside:
        assert not refused(driver, value, field), f"{key}: {limit} refuses {_show(value)}"
    for value in outside:
        assert refused(driver, value, field), f"{key}: {limit} lets {_show(value)} through"


@pytest.mark.parametrize(("key", "limit"), COERCED, ids=[k for k, _ in COERCED])
def test_a_stated_coercion_is_the_servers(key: str, limit: Limit) -> None:
    assert driver_of(key) == DRIVERS["*.page_size"]
    (high,) = limit.numbers
    assert page_size(high) == high
    assert page_size(high + 1) == high


def test_an_email_of_the_stated_length_is_an_email() -> None:
    assert len(_email(320)) == 320
    validate_approver("a", "A", _email(320))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else f"{text[:60]}... ({len(value)} long)"

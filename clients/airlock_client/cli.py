"""`airlock`: the command line for admins and approvers, on top of `AirlockClient`.

Human-readable output by default; `--json` prints one JSON document (the proto message in the
proto3 JSON mapping) for scripts. `main(argv)` can be called in-process and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from airlock.v1 import (
    approver_service_pb2,
    audit_service_pb2,
    common_pb2,
    event_pb2,
    identity_pb2,
    identity_service_pb2,
    session_pb2,
    session_service_pb2,
    team_pb2,
    team_service_pb2,
    vault_pb2,
    vault_service_pb2,
)
from airlock_client import checkpoints, cli_notifications, keys, proof
from airlock_client.client import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    AirlockClient,
    principal_kind,
)
from airlock_client.demo import DemoFailed, run_demo
from airlock_client.errors import AirlockError, StatusCode
from airlock_client.health import DEFAULT_SINCE, HealthReport

__all__ = ["format_duration", "main", "main_async", "parse_duration"]

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_LOCAL = 2
EXIT_DEMO_FAILED = 3
EXIT_PROOF_REJECTED = 4
EXIT_LOG_NOT_INTACT = 5
EXIT_PROOF_UNANCHORED = 6
EXIT_PROOF_UNPINNED = 7
EXIT_RPC_BASE = 64  # + the gRPC status code, as grpcurl does
EXIT_INTERRUPTED = 130

_EPILOG = f"""\
environment:
  AIRLOCK_SERVER       server address (default {DEFAULT_TARGET})
  AIRLOCK_TOKEN        bearer token (prefer AIRLOCK_TOKEN_FILE: a token in argv or the
                       environment can be seen by other local users)
  AIRLOCK_TOKEN_FILE   file holding the bearer token (its first non-empty line)
  AIRLOCK_TLS_CA, AIRLOCK_TLS_CERT, AIRLOCK_TLS_KEY   TLS files (see --tls-ca ...)

output:
  Human-readable by default; --json prints one JSON document: the resource, or the RPC
  response when it carries more than one thing; lists print the List response with every
  page merged. Errors go to stderr as `error: CODE REASON: message`, then one line per
  invalid field.

exit codes:
  0         success
  1         usage error (bad arguments, no credential given)
  2         local error (a file that cannot be read or written, a bad key file)
  3         `airlock demo`: a step did not behave as the story says
  4         `airlock proof verify`: the proof does not prove the approval (reasons on stderr)
  5         `airlock audit verify`: the event log or the checkpoint did not verify
  6         `airlock proof verify`: unanchored: nothing wrong found, but its checkpoint is
            signed by a log key you did not give (--log-key); stderr names that key
  7         `airlock proof verify`: unpinned: nothing wrong found and anchored, but no approver
            keys were pinned (--approver-key, --keyring from `airlock team keyring export`)
  10        `sessions wait|watch`, `restore request --wait`: the session was REJECTED
            (approval became impossible); 0 when it was APPROVED
  11        ... the session EXPIRED
  12        ... the session was CANCELLED (by a user, a team change or deletion)
  13        ... the session ended otherwise not approved
  64 + N    the server answered with gRPC status N, for example 67 INVALID_ARGUMENT,
            69 NOT_FOUND, 70 ALREADY_EXISTS, 71 PERMISSION_DENIED, 73 FAILED_PRECONDITION,
            76 UNIMPLEMENTED, 78 UNAVAILABLE, 80 UNAUTHENTICATED (the grpcurl convention)
  130       interrupted
"""


class UsageError(Exception):
    """Bad command-line input."""


class LocalError(Exception):
    """A local failure: files, keys."""


class ProofRejected(Exception):
    """`airlock proof verify` said no."""


class ProofUnanchored(Exception):
    """`airlock proof verify` found nothing wrong, but was given no log key to trust."""


class ProofUnpinned(Exception):
    """`airlock proof verify` found nothing wrong, but was given no approver keys to trust."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so that main() returns exit codes."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# -- durations and times ---------------------------------------------------------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> dt.timedelta:
    """Parses "90m", "24h", "7d", "1h30m", "45s", "2w" into a timedelta."""
    value = text.strip().lower()
    if not value or _DURATION_RE.sub("", value):
        raise ValueError(f"invalid duration {text!r}: use for example 90m, 24h, 7d or 1h30m")
    seconds = sum(
        int(amount) * _DURATION_UNITS[unit] for amount, unit in _DURATION_RE.findall(value)
    )
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """The shortest "7d", "24h", "1h30m" form of a duration (whole seconds)."""
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return sign + "".join(parts)


def parse_time(text: str) -> dt.datetime:
    """Parses an RFC 3339 time with an offset (for example 2030-01-01T00:00:00Z)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"invalid time {text!r}: use RFC 3339, e.g. 2030-01-01T00:00:00Z") from exc
    if value.tzinfo is None:
        raise ValueError(f"invalid time {text!r}: give an offset, e.g. Z or +02:00")
    return value


def _duration_arg(text: str) -> dt.timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _time_arg(text: str) -> dt.datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


# -- human-readable rendering ----------------------------------------------------------------


def _enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _enum_name(enum: EnumDescriptor | None, number: int) -> str:
    if enum is None:
        return str(number)
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name.removeprefix(_enum_prefix(enum))


def _enum_key(prefix: str, name: str | None) -> str:
    """The full enum value name for a CLI choice (`pending` -> `STATE_PENDING`); the
    UNSPECIFIED (0, "all") value when no choice was given."""
    return f"{prefix}{name.upper()}" if name else f"{prefix}UNSPECIFIED"


def _enum_choices(enum: EnumDescriptor) -> dict[str, int]:
    """Lower-case short names of an enum's values, without the UNSPECIFIED one."""
    return {_enum_name(enum, v.number).lower(): v.number for v in enum.values if v.number != 0}


def _format_time(value: timestamp_pb2.Timestamp) -> str:
    moment = value.ToDatetime(tzinfo=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _format_principal(value: common_pb2.Principal) -> str:
    kind = _enum_name(common_pb2.PrincipalKind.DESCRIPTOR, value.kind).lower()
    return f"{kind}:{value.subject}" if value.subject else kind


def _format_scalar(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_name(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "yes" if value else "no"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _format_inline(value)
    return str(value)


def _format_inline(message: Message) -> str:
    """A one-line rendering of the small well-known messages; others as compact JSON."""
    if isinstance(message, timestamp_pb2.Timestamp):
        return _format_time(message)
    if isinstance(message, duration_pb2.Duration):
        return format_duration(message.ToTimedelta())
    if isinstance(message, common_pb2.Principal):
        return _format_principal(message)
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"))


def _is_empty(field: FieldDescriptor, message: Message) -> bool:
    value = getattr(message, field.name)
    if _is_repeated(field):
        return len(value) == 0
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return not message.HasField(field.name)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return bool(value == 0)
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return not value
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False  # "no" is an answer (CheckAccess.allowed)
    return bool(value == 0) and field.name not in _ZERO_SHOWN


# Counts where 0 says something; other zero numbers are "not set" and left out of the text view.
_ZERO_SHOWN = frozenset(
    {"approval_count", "rejection_count", "active_approvers", "slack", "checked_count", "seq"}
)


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        _is_repeated(field)
        and field.type == FieldDescriptor.TYPE_MESSAGE
        and _message_type(field).GetOptions().map_entry
    )


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None
    return field.message_type


_INLINE_TYPES = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "airlock.v1.Principal",
}

# Table columns per message type; other types get their first scalar fields.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "airlock.v1.Approver": ("approver_id", "display_name", "email", "state"),
    "airlock.v1.Account": ("account_id", "name", "create_time"),
    "airlock.v1.Credential": ("credential_id", "principal", "state", "expire_time", "description"),
    "airlock.v1.ApprovalTeam": (
        "team_id",
        "name",
        "state",
        "status_code",
        "min_approvals",
        "number_of_approvers",
    ),
    "airlock.v1.TeamApprover": ("approver_id", "invitation_state", "response_time", "public_key"),
    "airlock.v1.TeamShare": ("team_id", "principal", "create_time"),
    "airlock.v1.Invitation": (
        "invitation_id",
        "team_name",
        "team_id",
        "state",
        "min_approvals",
        "number_of_approvers",
        "expire_time",
    ),
    "airlock.v1.Session": (
        "session_id",
        "kind",
        "state",
        "status_code",
        "requester",
        "protected_resource",
        "expire_time",
    ),
    "airlock.v1.Vote": ("approver_id", "decision", "vote_time", "comment"),
    "airlock.v1.Vault": ("vault_arn", "team_id", "min_retention_days", "max_retention_days"),
    "airlock.v1.RestoreAccessGrant": ("grant_id", "vault_arn", "account_id", "state", "session_id"),
    "airlock.v1.Event": ("seq", "time", "type", "actor", "subjects"),
}


def _descriptor(message: Message) -> Descriptor:
    # The runtime descriptor is upb's; it has the same API as the pure-Python one.
    descriptor: Descriptor = message.DESCRIPTOR  # type: ignore[assignment]
    return descriptor


def _columns(descriptor: Descriptor) -> list[FieldDescriptor]:
    names = _COLUMNS.get(descriptor.full_name)
    if names is not None:
        return [descriptor.fields_by_name[name] for name in names]
    return [
        f
        for f in descriptor.fields
        if not _is_repeated(f)
        and (f.type != FieldDescriptor.TYPE_MESSAGE or _message_type(f).full_name in _INLINE_TYPES)
    ][:6]


def _cell(message: Message, field: FieldDescriptor) -> str:
    value = getattr(message, field.name)
    if _is_repeated(field):
        return ",".join(_format_scalar(field, v) for v in value)
    if _is_empty(field, message):
        return "-"
    return _format_scalar(field, value)


def render_table(items: Sequence[Message], indent: str = "") -> list[str]:
    """Rows of items of one message type, in aligned columns under an upper-case header."""
    if not items:
        return []
    columns = _columns(_descriptor(items[0]))
    rows = [[c.name.upper() for c in columns]]
    rows.extend([_cell(item, c) for c in columns] for item in items)
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return [
        indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_message(message: Message, indent: str = "") -> list[str]:
    """Aligned `key: value` lines; nested messages indented, repeated messages as tables."""
    simple: list[tuple[str, str]] = []
    blocks: list[tuple[str, list[str]]] = []
    for field in _descriptor(message).fields:
        if _is_empty(field, message):
            continue
        value = getattr(message, field.name)
        if _is_map(field):
            simple.append((field.name, ", ".join(f"{k}={v}" for k, v in sorted(value.items()))))
        elif _is_repeated(field) and field.type == FieldDescriptor.TYPE_MESSAGE:
            blocks.append((field.name, render_table(list(value), indent + "  ")))
        elif _is_repeated(field):
            simple.append((field.name, ", ".join(_format_scalar(field, v) for v in value)))
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and _message_type(field).full_name not in _INLINE_TYPES
        ):
            blocks.append((field.name, render_message(value, indent + "  ")))
        else:
            simple.append((field.name, _format_scalar(field, value)))
    width = max((len(key) for key, _ in simple), default=0) + 1
    lines = [f"{indent}{(key + ':').ljust(width)} {text}" for key, text in simple]
    for key, block in blocks:
        lines.append(f"{indent}{key}:")
        lines.extend(block)
    return lines


class _Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    @property
    def out(self) -> TextIO:
        return sys.stdout

    def message(self, message: Message) -> None:
        if self.as_json:
            self.out.write(_to_json(message) + "\n")
        else:
            self.lines(render_message(message))

    def listing(self, response: Message, items: Sequence[Message], what: str) -> None:
        if self.as_json:
            self.out.write(_to_json(response) + "\n")
        elif not items:
            self.out.write(f"no {what}\n")
        else:
            self.lines(render_table(items))

    def document(self, data: dict[str, Any]) -> None:
        if self.as_json:
            self.out.write(json.dumps(data, indent=2) + "\n")
        else:
            width = max(len(k) for k in data) + 1
            self.lines([f"{(k + ':').ljust(width)} {v}" for k, v in data.items()])

    def lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.out.write(line + "\n")

    @staticmethod
    def note(text: str) -> None:
        sys.stderr.write(text + "\n")


def _to_json(message: Message) -> str:
    return json_format.MessageToJson(message, indent=2, always_print_fields_with_no_presence=True)


# -- commands ----------------------------------------------------------------------------------

_Handler = Callable[[AirlockClient, argparse.Namespace, _Output], Awaitable[None]]


async def _whoami(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.whoami())


async def _approvers_create(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.create_approver(args.approver_id, args.name, email=args.email))


async def _approvers_get(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.get_approver(args.approver_id))


async def _approvers_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    state = identity_pb2.Approver.State.Value(_enum_key("STATE_", args.state))
    items = [a async for a in client.list_approvers(state=state)]
    out.listing(identity_service_pb2.ListApproversResponse(approvers=items), items, "approvers")


async def _approvers_disable(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.disable_approver(args.approver_id))


async def _accounts_register(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.register_account(args.account_id, args.name))


async def _accounts_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    items = [a async for a in client.list_accounts()]
    out.listing(identity_service_pb2.ListAccountsResponse(accounts=items), items, "accounts")


async def _credentials_issue(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    # Create the token file before asking for the token, so that a file that cannot be written
    # never costs a token that nobody saw.
    token_file = keys.open_secret_file(args.token_out) if args.token_out else None
    try:
        response = await client.issue_credential(
            args.kind,
            args.subject,
            description=args.description,
            ttl=args.ttl,
            expire_time=args.expire_time,
        )
    except BaseException:
        if token_file is not None:
            token_file.close()
            os.unlink(args.token_out)
        raise
    token = response.token
    if token_file is not None:
        with token_file:
            token_file.write(token.encode("ascii") + b"\n")
        response.token = ""  # written to the file, not to the terminal
        out.message(response if out.as_json else response.credential)
        out.note(f"token written to {args.token_out} (mode 0600); it is shown nowhere else")
        return
    if out.as_json:
        out.message(response)
        return
    out.message(response.credential)
    if token:
        out.lines(["", f"token: {token}"])
        out.note("note: this token is shown only once and cannot be recovered; store it now")
    else:
        out.note("note: no token: this request_id was already used; the token was shown then")


async def _credentials_revoke(
    client: AirlockClient, args: argparse.Namespace, out: _Output
) -> None:
    out.message(await client.revoke_credential(args.credential_id))


async def _credentials_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    state = identity_pb2.Credential.State.Value(_enum_key("STATE_", args.state))
    items = [
        c async for c in client.list_credentials(kind=args.kind, subject=args.subject, state=state)
    ]
    out.listing(
        identity_service_pb2.ListCredentialsResponse(credentials=items), items, "credentials"
    )


async def _teams_create(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    team = await client.create_team(
        args.name,
        args.approvers,
        args.min_approvals,
        description=args.description,
        session_ttl=args.session_ttl,
        invitation_ttl=args.invitation_ttl,
    )
    out.message(team)


async def _teams_get(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.get_team(args.team_id))


async def _teams_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    state = team_pb2.ApprovalTeam.State.Value(_enum_key("STATE_", args.state))
    items = [t async for t in client.list_teams(state=state)]
    out.listing(team_service_pb2.ListApprovalTeamsResponse(teams=items), items, "teams")


async def _teams_share(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    share = await client.share_team(args.team_id, account_id=args.account, service=args.service)
    out.message(share)


async def _teams_unshare(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    share = await client.unshare_team(args.team_id, account_id=args.account, service=args.service)
    out.message(share)


async def _teams_shares(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    items = [s async for s in client.list_team_shares(args.team_id)]
    out.listing(team_service_pb2.ListTeamSharesResponse(shares=items), items, "shares")


async def _teams_delete(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.delete_inactive_team(args.team_id))


async def _teams_health(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.get_team_health(args.team_id, activity_window=args.window))


async def _proof_export(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    answer = await client.export_approval_proof(args.session_id)
    try:
        await asyncio.to_thread(Path(args.out).write_bytes, answer.proof)
    except OSError as exc:
        raise LocalError(f"cannot write {args.out}: {exc.strerror}") from exc
    out.document({"sessionId": args.session_id, "format": answer.format, "file": args.out})
    if not out.as_json:
        out.note(f"verify it anywhere, offline: airlock proof verify {args.out}")


def _log_key_arg(text: str) -> bytes:
    """A raw 32-byte Ed25519 public key: hex, base64, or a file holding either."""
    value = text.strip()
    path = Path(value)
    if path.is_file():
        value = path.read_text().strip()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise LocalError(f"--log-key {text}: neither hex nor base64 nor such a file") from exc
    if len(raw) != 32:
        raise LocalError(f"--log-key {text}: an Ed25519 public key is 32 bytes")
    return raw


async def _proof_verify(args: argparse.Namespace, out: _Output) -> None:
    try:
        data = await asyncio.to_thread(Path(args.file).read_bytes)
    except OSError as exc:
        raise LocalError(f"cannot read {args.file}: {exc.strerror}") from exc
    log_key = _log_key_arg(args.log_key) if args.log_key else None
    approver_keys = [keys.parse_public_key(k) for k in args.approver_keys or ()]
    for keyring in args.keyrings or ():
        try:
            text = await asyncio.to_thread(Path(keyring).read_bytes)
            approver_keys += proof.read_keyring(text).values()
        except OSError as exc:
            raise LocalError(f"cannot read {keyring}: {exc.strerror}") from exc
        except proof.ProofError as exc:
            raise LocalError(f"{keyring}: {exc}") from exc
    verdict = proof.verify_proof(data, log_key, approver_keys=approver_keys)
    headline = verdict.verdict
    signer = verdict.checkpoint_key
    if out.as_json:
        out.document(
            {
                "valid": verdict.valid,
                "anchored": verdict.anchored,
                "pinned": verdict.pinned,
                "verdict": headline,
                "problems": verdict.problems,
                "notes": verdict.notes,
                "checkpointKey": signer.hex() if signer else None,
                "checkpointKeyId": checkpoints.key_id(signer) if signer else None,
                "absentApproverKeys": [
                    base64.b64encode(k).decode("ascii") for k in verdict.absent_approver_keys
                ],
            }
        )
    else:
        out.lines([headline, *(f"  {note}" for note in verdict.notes)])
    if verdict.problems:
        raise ProofRejected("\n".join(verdict.problems))
    if verdict.unpinned:
        raise ProofUnpinned(
            "the proof holds together and is anchored in the server's log, but the approvers' "
            "keys it carries are the server's word: pin them (`airlock team keyring export "
            "TEAM --out FILE` once, then --keyring FILE; or --approver-key) and verify again"
        )
    if not verdict.valid:
        raise ProofUnanchored(
            "the proof holds together, but so would one made up by whoever holds the key its "
            "checkpoint is signed with:\n"
            f"  log key id  {checkpoints.key_id(signer) if signer else '?'}\n"
            f"  public key  {signer.hex() if signer else '?'}\n"
            "compare it with the log key the operator publishes (`airlock audit checkpoint`, "
            "the server's log_public_key) and verify again with --log-key KEY"
        )


async def _team_keyring_export(
    client: AirlockClient, args: argparse.Namespace, out: _Output
) -> None:
    """The keys of the team's version in force, to pin once (`proof verify --keyring`)."""
    team = await client.get_team(args.team_id)
    approvers = {a.approver_id: a.public_key for a in team.approvers if len(a.public_key) == 32}
    data = proof.keyring_document(team.team_id, team.version, approvers)
    try:
        await asyncio.to_thread(Path(args.out).write_bytes, data)
    except OSError as exc:
        raise LocalError(f"cannot write {args.out}: {exc.strerror}") from exc
    out.document(
        {
            "teamId": team.team_id,
            "version": team.version,
            "file": args.out,
            "approvers": [
                {"approverId": a, "keyId": checkpoints.key_id(k)} for a, k in approvers.items()
            ],
        }
    )
    if not out.as_json:
        out.note(
            "compare each key id with its approver over another channel, then keep the file: "
            f"airlock proof verify PROOF --log-key KEY --keyring {args.out}"
        )


async def _teams_baseline(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    session = await client.start_team_baseline(
        args.team_id, approver_ids=args.approvers or (), comment=args.comment
    )
    out.message(session)


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


async def _health(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    report = await client.health_report(since=args.since, activity_window=args.window)
    if out.as_json:
        out.out.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        out.lines(_health_lines(report))


async def _approver_keygen(args: argparse.Namespace, out: _Output) -> None:
    key = keys.generate_private_key()
    path = keys.save_private_key(key, args.out)
    out.document({"publicKey": keys.public_key_base64(key), "keyFile": str(path)})
    if not out.as_json:
        out.note(
            f"private key written to {path} (mode 0600); keep it on this machine, "
            "it never goes to the server"
        )


async def _approver_invitations(
    client: AirlockClient, args: argparse.Namespace, out: _Output
) -> None:
    state = team_pb2.Invitation.State.Value(_enum_key("STATE_", args.state))
    items = [i async for i in client.list_invitations(state=state, team_id=args.team)]
    out.listing(
        approver_service_pb2.ListInvitationsResponse(invitations=items), items, "invitations"
    )


async def _approver_accept(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    key = args.loaded_key
    out.message(await client.respond_to_invitation(args.invitation_id, True, key))


async def _approver_decline(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.respond_to_invitation(args.invitation_id, False))


async def _approver_sessions(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    state = session_pb2.Session.State.Value(_enum_key("STATE_", args.state))
    items = [
        s
        async for s in client.list_assigned_sessions(state=state, awaiting_vote=args.awaiting_vote)
    ]
    out.listing(
        approver_service_pb2.ListAssignedSessionsResponse(sessions=items), items, "sessions"
    )


def _draft_lines(session: session_pb2.Session) -> list[tuple[str, str]]:
    """A team update's draft, as the vote signs it (its digest is recomputed from these)."""
    if not session.HasField("team_draft"):
        return []
    d = session.team_draft
    lines = [
        ("draft", f"version {d.version}, M = {d.min_approvals} of {len(d.members)}"),
        ("ttls", f"session {d.session_ttl.seconds}s, invitation {d.invitation_ttl.seconds}s"),
        ("description", d.description or "-"),
    ]
    for m in d.members:
        change = session_pb2.TeamDraft.KeyChange.Name(m.key_change).removeprefix("KEY_CHANGE_")
        key = checkpoints.key_id(m.public_key) if m.public_key else "chosen at acceptance"
        vouched = " (vouched for by its current key)" if m.signed_by_current_key else ""
        lines.append((f"  {m.approver_id}", f"{change} key {key}{vouched}"))
    lines.append(("draft digest", keys.draft_digest(session)))
    return lines


async def _approver_vote(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    session = await client.get_session(args.session_id)
    approve = args.decision == "approve"
    shown = [
        ("decision", "APPROVE" if approve else "REJECT"),
        ("session", session.session_id),
        ("action", session.action),
        ("resource", session.protected_resource),
        ("requester", _format_principal(session.requester)),
        ("comment", session.comment or "-"),
        ("team", f"{session.team_name or session.team_id} (version {session.team_version})"),
        ("expires", _format_time(session.expire_time)),
        ("approvals", f"{session.approval_count} of {session.min_approvals} needed"),
        *_draft_lines(session),
    ]
    width = max(len(k) for k, _ in shown) + 1
    out.note("You are signing this vote:")
    out.note("\n".join(f"  {(k + ':').ljust(width)} {v}" for k, v in shown))
    if not args.yes and sys.stdin.isatty():
        answer = await asyncio.to_thread(input, "Sign and send this vote? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise LocalError("not voted")
    result = await client.sign_and_vote(session, approve, args.loaded_key, comment=args.comment)
    out.message(result)


async def _sessions_get(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.get_session(args.session_id))


async def _sessions_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    state = session_pb2.Session.State.Value(_enum_key("STATE_", args.state))
    kind = session_pb2.Session.Kind.Value(_enum_key("KIND_", args.kind))
    items = [
        s
        async for s in client.list_sessions(
            team_id=args.team,
            state=state,
            kind=kind,
            action=args.action,
            protected_resource=args.resource,
            requester_account_id=args.account,
            create_time_start=args.since,
            create_time_end=args.until,
        )
    ]
    out.listing(session_service_pb2.ListSessionsResponse(sessions=items), items, "sessions")


async def _sessions_cancel(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.cancel_session(args.session_id))


_FAILED, _CANCELLED = session_pb2.Session.STATE_FAILED, session_pb2.Session.STATE_CANCELLED


async def _sessions_watch(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    """Follows the session until it is final, through lost connections (a restart of the
    server or of its database): it reopens the watch with backoff, showing no state twice."""
    last: session_pb2.Session | None = None
    lost = 0
    while True:
        try:
            async for session in client.watch_session(args.session_id):
                lost = 0
                if session == last:
                    continue
                _write_session(out, session, first=last is None)
                last = session
            if last is not None and last.state in (_FAILED, _CANCELLED):
                raise cli_notifications.SessionNotApproved(last)
            return
        except AirlockError as exc:
            lost = await _ride_through(out, exc, lost, "reopening the watch")


def _write_session(out: _Output, session: session_pb2.Session, *, first: bool) -> None:
    if out.as_json:
        # One JSON document per line (JSON Lines): a stream has no single document.
        out.out.write(
            json_format.MessageToJson(
                session, indent=None, always_print_fields_with_no_presence=True
            )
            + "\n"
        )
    else:
        if not first:
            out.out.write("\n")
        out.lines(render_message(session))
    out.out.flush()


# A stream that follows something live waits this long at most between two attempts.
RIDE_THROUGH_MAX_BACKOFF = 10.0


async def _ride_through(out: _Output, error: AirlockError, lost: int, what: str) -> int:
    """After a lost stream: re-raise anything but UNAVAILABLE; else say so once per outage,
    wait (exponential backoff, 0.5 s doubling up to 10 s) and return the new failure count."""
    if error.code != StatusCode.UNAVAILABLE:
        raise error
    if lost == 0:
        out.note(f"connection lost ({error.reason or error.code.name}); {what}")
    await asyncio.sleep(min(RIDE_THROUGH_MAX_BACKOFF, 0.5 * 2**lost))
    return lost + 1


async def _vaults_create(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    vault = await client.create_vault(
        args.name,
        min_retention_days=args.min_retention_days,
        max_retention_days=args.max_retention_days,
        tags=dict(args.tag),
    )
    out.message(vault)


async def _vaults_get(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.get_vault(args.vault_arn))


async def _vaults_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    items = [v async for v in client.list_vaults(account_id=args.account, team_id=args.team)]
    out.listing(vault_service_pb2.ListVaultsResponse(vaults=items), items, "vaults")


async def _vaults_associate(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.associate_team(args.vault_arn, args.team_id, comment=args.comment))


async def _vaults_disassociate(
    client: AirlockClient, args: argparse.Namespace, out: _Output
) -> None:
    out.message(await client.disassociate_team(args.vault_arn, comment=args.comment))


async def _restore_request(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    response = await client.request_restore_access(
        args.vault_arn, restore_vault_name=args.name, comment=args.comment
    )
    if not args.wait:
        out.message(response)
        return
    out.note(f"restore access requested: session {response.session.session_id}")
    await cli_notifications.finish_wait(client, response.session.session_id, out)


async def _restore_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    state = vault_pb2.RestoreAccessGrant.State.Value(_enum_key("STATE_", args.state))
    items = [g async for g in client.list_restore_access(vault_arn=args.vault, state=state)]
    out.listing(vault_service_pb2.ListRestoreAccessResponse(grants=items), items, "grants")


async def _restore_revoke(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.revoke_restore_access(args.grant_id, comment=args.comment))


async def _restore_check(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    out.message(await client.check_access(args.vault_arn, args.account_id))


# -- the parser --------------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, root: bool) -> None:
    """The connection and output options, accepted before or after the subcommand.

    On subcommands they default to SUPPRESS, so a value given before the subcommand is kept.
    """

    def default(value: Any) -> Any:
        return value if root else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default(None),
        help=f"server address (env AIRLOCK_SERVER; default {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=default(None),
        help="bearer token (env AIRLOCK_TOKEN); prefer --token-file",
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        default=default(None),
        help="file holding the bearer token (env AIRLOCK_TOKEN_FILE)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (proto3 JSON mapping) instead of text",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=default(DEFAULT_TIMEOUT),
        help=f"deadline of each call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="use TLS with the system's CAs (implied by --tls-ca/--tls-cert)",
    )
    group.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=default(None),
        help="CA certificates to trust (env AIRLOCK_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=default(None),
        help="client certificate chain for mutual TLS (env AIRLOCK_TLS_CERT)",
    )
    group.add_argument(
        "--tls-key",
        metavar="PEM",
        default=default(None),
        help="client private key for mutual TLS (env AIRLOCK_TLS_KEY)",
    )


def _state_option(parser: argparse.ArgumentParser, enum: EnumDescriptor, what: str) -> None:
    parser.add_argument(
        "--state",
        choices=sorted(_enum_choices(enum)),
        default=None,
        help=f"only {what} in this state",
    )


def _share_target(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--account", metavar="ACCOUNT_ID", help="a 12-digit account id")
    target.add_argument("--service", metavar="NAME", help="a service principal's name")


def _tag_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid tag {text!r}: use KEY=VALUE")
    return key, value


def _version() -> str:
    """The installed package's version (its metadata, from pyproject.toml)."""
    try:
        return importlib.metadata.version("airlock")
    except importlib.metadata.PackageNotFoundError:  # a source tree never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The `airlock` argument parser."""
    parser = _Parser(
        prog="airlock",
        description="Airlock: multi-party approval for logically air-gapped backup vaults.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"airlock {_version()}")
    _global_options(parser, root=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: Any, name: str, help_text: str, handler: _Handler | None = None
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog="Exit codes and environment: see `airlock --help`.",
        )
        if handler is not None:
            _global_options(sub, root=False)
            sub.set_defaults(handler=handler)
        return sub

    def family(name: str, help_text: str) -> Any:
        sub = command(commands, name, help_text)
        return sub.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    command(commands, "whoami", "show the caller's principal and credential id", _whoami)

    # approvers
    group = family("approvers", "approver identities (admin)")
    p = command(group, "create", "create an approver identity", _approvers_create)
    p.add_argument("approver_id", metavar="ID")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--email", default="", help="e-mail address (informational)")
    p = command(group, "get", "show an approver identity", _approvers_get)
    p.add_argument("approver_id", metavar="ID")
    p = command(group, "list", "list approver identities", _approvers_list)
    _state_option(p, identity_pb2.Approver.State.DESCRIPTOR, "approvers")
    p = command(group, "disable", "disable an approver identity (terminal)", _approvers_disable)
    p.add_argument("approver_id", metavar="ID")

    # accounts
    group = family("accounts", "registered accounts (admin)")
    p = command(group, "register", "register an account", _accounts_register)
    p.add_argument("account_id", metavar="ID", help="the 12-digit account id")
    p.add_argument("--name", required=True, help="account name")
    command(group, "list", "list registered accounts", _accounts_list)

    # credentials
    group = family("credentials", "bearer credentials (admin)")
    p = command(group, "issue", "issue a credential; the token is shown once", _credentials_issue)
    p.add_argument(
        "--kind", required=True, choices=["admin", "account", "approver", "service", "auditor"]
    )
    p.add_argument(
        "--subject",
        default="",
        help="account id, approver id or service name (a free label for admin/auditor)",
    )
    p.add_argument("--description", default="", help="who holds it, what for")
    expiry = p.add_mutually_exclusive_group()
    expiry.add_argument(
        "--ttl", type=_duration_arg, metavar="DURATION", help="lifetime, e.g. 24h, 90m, 7d"
    )
    expiry.add_argument(
        "--expire-time", type=_time_arg, metavar="RFC3339", help="e.g. 2030-01-01T00:00:00Z"
    )
    p.add_argument(
        "--token-out",
        metavar="FILE",
        help="write the token to this new file (mode 0600) instead of printing it",
    )
    p = command(group, "revoke", "revoke a credential", _credentials_revoke)
    p.add_argument("credential_id", metavar="ID")
    p = command(group, "list", "list credential metadata (never a token)", _credentials_list)
    p.add_argument("--kind", choices=["admin", "account", "approver", "service", "auditor"])
    p.add_argument("--subject", default="")
    _state_option(p, identity_pb2.Credential.State.DESCRIPTOR, "credentials")

    # teams
    group = family("teams", "approval teams (admin)")
    p = command(group, "create", "create a team and invite its approvers", _teams_create)
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--approver",
        dest="approvers",
        action="append",
        required=True,
        metavar="ID",
        help="an approver to invite (repeat for each)",
    )
    p.add_argument("--min-approvals", type=int, required=True, metavar="M", help="M of N")
    p.add_argument("--description", default="")
    p.add_argument(
        "--session-ttl",
        type=_duration_arg,
        metavar="DURATION",
        help="how long a session stays open, e.g. 24h (default 24h; 15m .. 7d)",
    )
    p.add_argument(
        "--invitation-ttl",
        type=_duration_arg,
        metavar="DURATION",
        help="how long invitees have to accept, e.g. 24h (default 24h)",
    )
    p = command(group, "get", "show a team and its approvers", _teams_get)
    p.add_argument("team_id", metavar="TEAM_ID")
    p = command(group, "list", "list teams", _teams_list)
    _state_option(p, team_pb2.ApprovalTeam.State.DESCRIPTOR, "teams")
    p = command(group, "share", "share a team with an account or a service", _teams_share)
    p.add_argument("team_id", metavar="TEAM_ID")
    _share_target(p)
    p = command(group, "unshare", "remove a share", _teams_unshare)
    p.add_argument("team_id", metavar="TEAM_ID")
    _share_target(p)
    p = command(group, "shares", "list a team's shares", _teams_shares)
    p.add_argument("team_id", metavar="TEAM_ID")
    p = command(group, "delete", "delete a PENDING or INACTIVE team", _teams_delete)
    p.add_argument("team_id", metavar="TEAM_ID")
    p = command(group, "health", "whether the team can still reach its quorum", _teams_health)
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument(
        "--window", type=_duration_arg, metavar="DURATION", help="activity window (default 90d)"
    )
    p = command(
        group,
        "baseline",
        "start a baseline session: the approvers show they still respond",
        _teams_baseline,
    )
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument(
        "--approver",
        dest="approvers",
        action="append",
        metavar="ID",
        help="ask only this approver (repeat; default: every approver of the team)",
    )
    p.add_argument("--comment", default="", help="shown to the approvers")

    # approver (the approver's own commands)
    group = family("approver", "an approver's own commands (approver credential)")
    p = command(group, "keygen", "generate a signing key; prints its public key")
    p.add_argument("--out", required=True, metavar="FILE", help="new private key file (0600)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(local=_approver_keygen)
    p = command(group, "invitations", "list your invitations", _approver_invitations)
    _state_option(p, team_pb2.Invitation.State.DESCRIPTOR, "invitations")
    p.add_argument("--team", default="", metavar="TEAM_ID", help="only invitations into this team")
    p = command(group, "accept", "accept an invitation, enrolling your key", _approver_accept)
    p.add_argument("invitation_id", metavar="INVITATION_ID")
    p.add_argument("--key", required=True, metavar="FILE", help="your private key file (keygen)")
    p = command(group, "decline", "decline an invitation", _approver_decline)
    p.add_argument("invitation_id", metavar="INVITATION_ID")
    p = command(group, "vote", "sign (locally) and cast your vote on a session", _approver_vote)
    p.add_argument("session_id", metavar="SESSION_ID")
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", dest="decision", action="store_const", const="approve")
    decision.add_argument("--reject", dest="decision", action="store_const", const="reject")
    p.add_argument("--key", required=True, metavar="FILE", help="your private key file (keygen)")
    p.add_argument("--comment", default="", help="for the other approvers (not signed)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
    p = command(group, "sessions", "list the sessions assigned to you", _approver_sessions)
    _state_option(p, session_pb2.Session.State.DESCRIPTOR, "sessions")
    p.add_argument("--awaiting-vote", action="store_true", help="only those you have not voted on")

    # team keyrings: approver keys pinned once for `proof verify`
    group = family("team", "a team's approver keys, to pin for proof verification")
    keyring = command(group, "keyring", "a team's keyring of approver keys")
    keyring_group = keyring.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(
        keyring_group,
        "export",
        "write the approver keys of a team's version in force to a keyring file",
        _team_keyring_export,
    )
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the keyring")

    # approval proofs
    group = family("proof", "approval proofs: export from the server, verify offline")
    p = command(group, "export", "write the approval proof of an APPROVED session", _proof_export)
    p.add_argument("session_id", metavar="SESSION_ID")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the proof")
    p = command(
        group,
        "verify",
        "check a proof offline (no server): exit 0 only if it proves approval under --log-key",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--log-key",
        metavar="KEY",
        help="the event log's Ed25519 public key (hex, base64 or a file), as the operator "
        "publishes it: the proof is VALID only if its checkpoint is signed with it; without "
        "it the answer is at best UNANCHORED (exit 6)",
    )
    p.add_argument(
        "--approver-key",
        dest="approver_keys",
        action="append",
        metavar="FILE",
        help="an approver's Ed25519 public key you know (a file, or the value, in base64 as "
        "`approver keygen` prints it, hex or PEM); repeat; then only APPROVEs by these keys "
        "count toward M",
    )
    p.add_argument(
        "--keyring",
        dest="keyrings",
        action="append",
        metavar="FILE",
        help="a team keyring (`airlock team keyring export`): pins every approver key in it; "
        "without pinned keys the answer is at best UNPINNED (exit 7)",
    )
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    p.set_defaults(local=_proof_verify)

    # sessions
    group = family("sessions", "approval sessions")
    p = command(group, "get", "show a session and its votes", _sessions_get)
    p.add_argument("session_id", metavar="SESSION_ID")
    p = command(group, "list", "list sessions", _sessions_list)
    p.add_argument("--team", default="", metavar="TEAM_ID")
    _state_option(p, session_pb2.Session.State.DESCRIPTOR, "sessions")
    p.add_argument("--kind", choices=sorted(_enum_choices(session_pb2.Session.Kind.DESCRIPTOR)))
    p.add_argument("--action", default="")
    p.add_argument("--resource", default="", metavar="ARN", help="the protected resource")
    p.add_argument("--account", default="", metavar="ACCOUNT_ID", help="the requesting account")
    p.add_argument("--since", type=_time_arg, metavar="RFC3339", help="created at or after")
    p.add_argument("--until", type=_time_arg, metavar="RFC3339", help="created before")
    p = command(group, "cancel", "cancel a pending session", _sessions_cancel)
    p.add_argument("session_id", metavar="SESSION_ID")
    p = command(
        group, "watch", "follow a session until it ends (--json: JSON Lines)", _sessions_watch
    )
    p.add_argument("session_id", metavar="SESSION_ID")
    p = command(
        group,
        "wait",
        "block until a session ends, riding through server restarts; exit 0 approved, "
        "10 rejected, 11 expired, 12 cancelled",
        cli_notifications.sessions_wait,
    )
    p.add_argument("session_id", metavar="SESSION_ID")

    # vaults
    group = family("vaults", "logically air-gapped vaults (account)")
    p = command(group, "create", "create a vault in your account", _vaults_create)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--min-retention-days", type=int, required=True, metavar="DAYS")
    p.add_argument("--max-retention-days", type=int, required=True, metavar="DAYS")
    p.add_argument("--tag", type=_tag_arg, action="append", default=[], metavar="KEY=VALUE")
    p = command(group, "get", "show a vault", _vaults_get)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p = command(group, "list", "list vaults", _vaults_list)
    p.add_argument("--account", default="", metavar="ACCOUNT_ID")
    p.add_argument("--team", default="", metavar="TEAM_ID")
    p = command(group, "associate", "associate an approval team", _vaults_associate)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument("--comment", default="")
    p = command(group, "disassociate", "remove the team (voted by it)", _vaults_disassociate)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("--comment", default="")

    # restore access
    group = family("restore", "restore access grants")
    p = command(group, "request", "request restore access from a vault", _restore_request)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("--name", default="", help="the restore access vault's name")
    p.add_argument("--comment", default="", help="for the approvers (at most 200 characters)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="block until the session ends (exit codes as `sessions wait`)",
    )
    p = command(group, "list", "list restore access grants", _restore_list)
    p.add_argument("--vault", default="", metavar="VAULT_ARN")
    _state_option(p, vault_pb2.RestoreAccessGrant.State.DESCRIPTOR, "grants")
    p = command(group, "revoke", "revoke a grant (voted by the vault's team)", _restore_revoke)
    p.add_argument("grant_id", metavar="GRANT_ID")
    p.add_argument("--comment", default="")
    p = command(group, "check", "may an account restore from a vault now?", _restore_check)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("account_id", metavar="ACCOUNT_ID")

    # the health report
    p = command(
        commands,
        "health",
        "health of every team: teams at risk, inactive approvers, sessions by outcome "
        "(admin, auditor)",
        _health,
    )
    p.add_argument(
        "--since",
        type=_duration_arg,
        default=DEFAULT_SINCE,
        metavar="DURATION",
        help="count the sessions created in this period, e.g. 30d (default 30d)",
    )
    p.add_argument(
        "--window",
        type=_duration_arg,
        metavar="DURATION",
        help="an approver is active if it acted within this window (default 90d)",
    )

    # audit
    group = family("audit", "the tamper-evident event log (admin, auditor)")
    p = command(group, "list", "list events, oldest first", _audit_list)
    p.add_argument("--type", default="", help='a type, or a family ending with "." (session.)')
    p.add_argument(
        "--actor", type=_actor_arg, metavar="KIND[:SUBJECT]", help="e.g. account:111122223333"
    )
    p.add_argument("--subject", default="", help="e.g. team:<id>, session:<id>, a vault ARN")
    p.add_argument("--since", type=_time_arg, metavar="RFC3339", help="at or after")
    p.add_argument("--until", type=_time_arg, metavar="RFC3339", help="before")
    p.add_argument("--after-seq", type=int, default=0, metavar="N", help="only seq > N")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N events")
    p = command(
        group,
        "tail",
        "follow the log live, one line per event (--json: JSON Lines); resumes after a "
        "lost connection",
        _audit_tail,
    )
    p.add_argument(
        "--from-seq", type=int, default=1, metavar="N", help="start at seq N (default 1)"
    )
    p.add_argument("--type", default="", help='only this type, or a family ending with "."')
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")
    p = command(group, "checkpoint", "get the log's signed head; --out keeps it", _audit_checkpoint)
    p.add_argument("--out", metavar="FILE", help="save the checkpoint to this new file (JSON)")
    p = command(
        group,
        "verify",
        "recompute the hash chain on the server, and check a saved checkpoint "
        "(exit code 5 when not intact)",
        _audit_verify,
    )
    p.add_argument("--from-seq", type=int, default=0, metavar="N")
    p.add_argument("--to-seq", type=int, default=0, metavar="N")
    p.add_argument("--checkpoint", metavar="FILE", help="a checkpoint saved by `audit checkpoint`")
    p.add_argument(
        "--log-key",
        metavar="PUBKEY",
        help="the log's public key to trust (hex, base64 or a file); default: the key saved "
        "in the checkpoint",
    )

    # demo
    command(
        commands,
        "demo",
        "run the whole recovery story against the server (admin credential); "
        "--json prints a summary",
        _demo,
    )

    # notifications (cli_notifications.py)
    cli_notifications.add_commands(family, command)

    return parser


async def _demo(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    # With --json the narration goes to stderr and stdout holds only the summary document.
    narration = sys.stderr if out.as_json else out.out
    try:
        summary = await run_demo(client, lambda token: _connect(args, token), narration)
    except DemoFailed as failed:
        # A server out of reach is no step misbehaving: the CLI's exit code for UNAVAILABLE.
        cause = failed.__cause__
        if isinstance(cause, AirlockError) and cause.code == StatusCode.UNAVAILABLE:
            raise cause from None
        raise
    if out.as_json:
        out.document(summary.as_dict())


# -- audit -------------------------------------------------------------------------------------


class LogNotIntact(Exception):
    """`airlock audit verify` found a problem (exit code 4)."""


def _actor_arg(text: str) -> common_pb2.Principal:
    kind, _, subject = text.partition(":")
    if kind == "system":
        return common_pb2.Principal(subject="system")
    try:
        return common_pb2.Principal(kind=principal_kind(kind), subject=subject)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid actor {text!r}: use KIND or KIND:SUBJECT (admin, account, approver, "
            "service, auditor, system)"
        ) from exc


def _actor_text(p: common_pb2.Principal) -> str:
    if p.kind == common_pb2.PRINCIPAL_KIND_UNSPECIFIED:
        return p.subject or "system"
    kind = common_pb2.PrincipalKind.Name(p.kind).removeprefix("PRINCIPAL_KIND_").lower()
    return f"{kind}:{p.subject}" if p.subject else kind


def _whole_numbers(value: Any) -> Any:
    """A Struct keeps every number as a double: 2.0 is shown as the 2 it was."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def event_line(e: event_pb2.Event) -> str:
    """One line per event: seq, time, type, actor, subjects, details (compact JSON)."""
    time = e.time.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    details = json.dumps(
        _whole_numbers(json_format.MessageToDict(e.details)),
        sort_keys=True,
        separators=(",", ":"),
    )
    subjects = ",".join(e.subjects) or "-"
    return f"{e.seq} {time} {e.type} {_actor_text(e.actor)} {subjects} {details}"


def _write_event(out: _Output, e: event_pb2.Event) -> None:
    if out.as_json:
        document = json_format.MessageToDict(e, always_print_fields_with_no_presence=True)
        document["details"] = _whole_numbers(document.get("details", {}))
        out.out.write(json.dumps(document) + "\n")
    else:
        out.out.write(event_line(e) + "\n")
    out.out.flush()


def _type_matches(wanted: str, type_: str) -> bool:
    if not wanted:
        return True
    return type_.startswith(wanted) if wanted.endswith(".") else type_ == wanted


async def _audit_list(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    shown = 0
    async for e in client.list_events(
        type=args.type,
        actor=args.actor,
        subject=args.subject,
        start_time=args.since,
        end_time=args.until,
        after_seq=args.after_seq,
        page_size=min(args.limit, 1000) if args.limit else 0,
    ):
        _write_event(out, e)
        shown += 1
        if args.limit and shown >= args.limit:
            break
    if not shown and not out.as_json:
        out.note("no events")


async def _audit_tail(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    """Follows the log; after a lost connection (a restart of the server or of its database)
    it resumes after the last seq it saw, with backoff, saying so once per outage."""
    last = max(args.from_seq - 1, 0)
    shown = 0
    lost = 0
    while True:
        try:
            async for e in client.watch_events(after_seq=last):
                lost = 0
                last = e.seq
                if _type_matches(args.type, e.type):
                    _write_event(out, e)
                    shown += 1
                    if args.count and shown >= args.count:
                        return
            return
        except AirlockError as exc:
            lost = await _ride_through(out, exc, lost, f"resuming after seq {last}")


async def _audit_checkpoint(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    checkpoint = await client.get_log_checkpoint()
    checkpoints.verify_signature(checkpoint, checkpoint.public_key)
    if args.out:
        checkpoints.save(checkpoint, args.out)
    document = checkpoints.to_document(checkpoint)
    if args.out:
        document["saved_to"] = args.out
    out.document(document)


async def _audit_verify(client: AirlockClient, args: argparse.Namespace, out: _Output) -> None:
    checkpoint = checkpoints.load(args.checkpoint) if args.checkpoint else None
    key_note = ""
    if checkpoint is not None:
        if args.log_key:
            pinned = checkpoints.parse_public_key(args.log_key)
            if pinned != checkpoint.public_key:
                raise checkpoints.CheckpointError(
                    f"the checkpoint names log key {checkpoints.key_id(checkpoint.public_key)}, "
                    f"not the pinned key {checkpoints.key_id(pinned)}"
                )
            key_note = f"signature verified with the pinned log key {checkpoints.key_id(pinned)}"
        else:
            key_note = (
                "signature verified with the key saved in the checkpoint file "
                f"({checkpoints.key_id(checkpoint.public_key)}); pin it with --log-key"
            )
        checkpoints.verify_signature(checkpoint, checkpoint.public_key)
    result = await client.verify_log(
        from_seq=args.from_seq, to_seq=args.to_seq, checkpoint=checkpoint
    )
    problem = audit_service_pb2.VerifyLogResponse.Problem.Name(result.problem).removeprefix(
        "PROBLEM_"
    )
    document: dict[str, Any] = {
        "intact": result.ok,
        "checked": result.checked_count,
        "head_seq": result.head.seq,
    }
    if checkpoint is not None:
        document["checkpoint_seq"] = checkpoint.seq
        document["checkpoint"] = key_note
    if not result.ok:
        document["first_bad_seq"] = result.first_bad_seq
        document["problem"] = problem
        document["description"] = result.problem_description
    if out.as_json:
        out.document(document)
    elif result.ok:
        against = f", consistent with the checkpoint at seq {checkpoint.seq}" if checkpoint else ""
        out.lines([f"log intact: {result.checked_count} events checked{against}"])
        if key_note:
            out.lines([key_note])
    else:
        out.lines(
            [
                f"log NOT intact: first bad seq {result.first_bad_seq}: {problem}",
                result.problem_description,
            ]
        )
    if not result.ok:
        raise LogNotIntact(f"first bad seq {result.first_bad_seq}: {problem}")


# -- running -----------------------------------------------------------------------------------


def _read_token_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalError(f"cannot read token file {path}: {getattr(exc, 'strerror', exc)}") from exc
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise LocalError(f"token file {path} holds no token")


def _resolve_token(args: argparse.Namespace) -> str:
    if args.token and args.token_file:
        raise UsageError("airlock: give --token or --token-file, not both")
    if args.token:
        return str(args.token)
    if args.token_file:
        return _read_token_file(args.token_file)
    if os.environ.get("AIRLOCK_TOKEN"):
        return os.environ["AIRLOCK_TOKEN"].strip()
    if os.environ.get("AIRLOCK_TOKEN_FILE"):
        return _read_token_file(os.environ["AIRLOCK_TOKEN_FILE"])
    raise UsageError(
        "airlock: no credential: give --token-file FILE (or --token, AIRLOCK_TOKEN_FILE, "
        "AIRLOCK_TOKEN)"
    )


def _read_pem(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from exc


def _connect(args: argparse.Namespace, token: str) -> AirlockClient:
    env = os.environ
    ca = _read_pem(args.tls_ca or env.get("AIRLOCK_TLS_CA"))
    cert = _read_pem(args.tls_cert or env.get("AIRLOCK_TLS_CERT"))
    key = _read_pem(args.tls_key or env.get("AIRLOCK_TLS_KEY"))
    if (cert is None) != (key is None):
        raise UsageError("airlock: --tls-cert and --tls-key go together")
    return AirlockClient.connect(
        args.server or env.get("AIRLOCK_SERVER") or DEFAULT_TARGET,
        token,
        timeout=args.timeout,
        tls=args.tls,
        root_certificates=ca,
        certificate_chain=cert,
        private_key=key,
    )


def print_error(error: AirlockError, *, plaintext: bool = False) -> None:
    """`error: CODE REASON: message`, then each invalid field, on stderr; each thing once (the
    reason when it is not the code again, the message when it is not the fields again). With
    `plaintext`, an UNAVAILABLE of the connection itself (no reason: not the server's answer)
    that is not a refused connection gets a hint: a TLS server closes a plaintext client's
    connection at the handshake."""
    head = error.code.name
    if error.reason and error.reason != error.code.name:
        head += f" {error.reason}"
    fields = [f"{v.field}: {v.description}" for v in error.field_violations]
    if error.message and error.message != "; ".join(fields):
        head += f": {error.message}"
    elif fields:
        head += ": invalid fields"
    sys.stderr.write(f"error: {head}\n")
    for line in fields:
        sys.stderr.write(f"  {line}\n")
    closed = not error.reason and "refused" not in error.message
    if plaintext and error.code == StatusCode.UNAVAILABLE and closed:
        sys.stderr.write("hint: is the server using TLS? try --tls-ca PEM (or --tls)\n")


def _plaintext(args: argparse.Namespace | None) -> bool:
    env = os.environ
    return args is not None and not (
        args.tls
        or args.tls_ca
        or args.tls_cert
        or env.get("AIRLOCK_TLS_CA")
        or env.get("AIRLOCK_TLS_CERT")
    )


async def main_async(argv: Sequence[str] | None = None) -> int:
    """Runs one command in the running event loop; returns the exit code."""
    args: argparse.Namespace | None = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help, --version
            return exit_.code if isinstance(exit_.code, int) else EXIT_OK
        out = _Output(as_json=args.json)
        local: Callable[[argparse.Namespace, _Output], Awaitable[None]] | None = getattr(
            args, "local", None
        )
        if local is not None:
            await local(args, out)
            return EXIT_OK
        if getattr(args, "handler", None) in (_approver_accept, _approver_vote):
            args.loaded_key = keys.load_private_key(args.key)  # before any call to the server
        token = _resolve_token(args)
        async with _connect(args, token) as client:
            handler: _Handler = args.handler
            await handler(client, args, out)
        return EXIT_OK
    except UsageError as exc:
        sys.stderr.write(f"{exc}\nTry 'airlock --help'.\n")
        return EXIT_USAGE
    except LogNotIntact:
        return EXIT_LOG_NOT_INTACT
    except (LocalError, keys.KeyFileError, checkpoints.CheckpointError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_LOCAL
    except ProofRejected as exc:
        sys.stderr.write(f"proof rejected:\n{exc}\n")
        return EXIT_PROOF_REJECTED
    except ProofUnanchored as exc:
        sys.stderr.write(f"proof not anchored:\n{exc}\n")
        return EXIT_PROOF_UNANCHORED
    except ProofUnpinned as exc:
        sys.stderr.write(f"proof not pinned:\n{exc}\n")
        return EXIT_PROOF_UNPINNED
    except DemoFailed as exc:
        sys.stderr.write(f"demo failed: {exc}\n")
        return EXIT_DEMO_FAILED
    except cli_notifications.SessionNotApproved as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.exit_code
    except AirlockError as exc:
        print_error(exc, plaintext=_plaintext(args))
        return EXIT_RPC_BASE + int(exc.code)


def main(argv: Sequence[str] | None = None) -> int:
    """The `airlock` entry point. Call it from synchronous code (it runs its own event loop);
    from a coroutine use `await main_async(argv)`."""
    try:
        return asyncio.run(main_async(argv))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""What `airlock` prints: human-readable text by default (aligned `key: value` lines, tables of
list items), or with `--json` one JSON document in the proto3 JSON mapping."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from airlock.v1 import common_pb2
from airlock_cli.values import enum_name, format_duration


def format_time(value: timestamp_pb2.Timestamp) -> str:
    moment = value.ToDatetime(tzinfo=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def format_principal(value: common_pb2.Principal) -> str:
    kind = enum_name(common_pb2.PrincipalKind.DESCRIPTOR, value.kind).lower()
    return f"{kind}:{value.subject}" if value.subject else kind


def _format_scalar(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
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
        return format_time(message)
    if isinstance(message, duration_pb2.Duration):
        return format_duration(message.ToTimedelta())
    if isinstance(message, common_pb2.Principal):
        return format_principal(message)
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


class Output:
    """Where a command writes: its result on stdout (text, or JSON with --json), notes on stderr."""

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

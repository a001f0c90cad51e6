"""How `airlock` reads values from its command line and names them back: durations, times,
enum values (a proto enum's short lower-case names as choices)."""

from __future__ import annotations

import argparse
import datetime as dt
import re

from google.protobuf.descriptor import EnumDescriptor

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


def duration_arg(text: str) -> dt.timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def time_arg(text: str) -> dt.datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


# -- enum values -------------------------------------------------------------------------------


def _enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_name(enum: EnumDescriptor | None, number: int) -> str:
    """An enum value's name without its type's prefix (`Session.State` 2 -> `APPROVED`)."""
    if enum is None:
        return str(number)
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name.removeprefix(_enum_prefix(enum))


def enum_key(prefix: str, name: str | None) -> str:
    """The full enum value name for a CLI choice (`pending` -> `STATE_PENDING`); the
    UNSPECIFIED (0, "all") value when no choice was given."""
    return f"{prefix}{name.upper()}" if name else f"{prefix}UNSPECIFIED"


def enum_choices(enum: EnumDescriptor) -> dict[str, int]:
    """Lower-case short names of an enum's values, without the UNSPECIFIED one."""
    return {enum_name(enum, v.number).lower(): v.number for v in enum.values if v.number != 0}


def state_option(parser: argparse.ArgumentParser, enum: EnumDescriptor, what: str) -> None:
    """`--state` of a List command: one of the enum's states, or every state."""
    parser.add_argument(
        "--state",
        choices=sorted(enum_choices(enum)),
        default=None,
        help=f"only {what} in this state",
    )

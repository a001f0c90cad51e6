"""Write docs/errors.md from the ErrorReason enum of proto/airlock/v1/errors.proto.

    python scripts/errors_doc.py           # rewrite docs/errors.md
    python scripts/errors_doc.py --check   # exit 1 if docs/errors.md is stale

The enum is the one catalogue of error reasons: each value's comment starts with the status code
it comes with. tests/unit/test_error_reasons.py proves that the server raises exactly these
reasons with exactly these codes, and that docs/errors.md is this script's output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

from generated_doc import write_or_check

REPO = Path(__file__).resolve().parent.parent
PROTO = REPO / "proto" / "airlock" / "v1" / "errors.proto"
DOC = REPO / "docs" / "errors.md"

_VALUE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(\d+)\s*;")
_CODES = re.compile(r"^([A-Z_]+(?: or [A-Z_]+)*): (.+)$", re.DOTALL)


class Entry(NamedTuple):
    """One value of ErrorReason: its name (the wire reason), number, status codes and when."""

    name: str
    number: int
    codes: tuple[str, ...]
    when: str


def parse(text: str) -> list[Entry]:
    """The values of `enum ErrorReason` with their comments, in file order."""
    entries: list[Entry] = []
    comment: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if not inside:
            inside = stripped.startswith("enum ErrorReason ")
            continue
        if stripped == "}":
            break
        if stripped.startswith("//"):
            comment.append(stripped.removeprefix("//").strip())
            continue
        match = _VALUE.match(line)
        if match:
            text_of = " ".join(comment)
            coded = _CODES.match(text_of)
            codes = tuple(coded.group(1).split(" or ")) if coded else ()
            when = coded.group(2) if coded else text_of
            entries.append(Entry(match.group(1), int(match.group(2)), codes, when))
        comment = []
    return entries


HEADER = """\
# Error reasons

Written by `scripts/errors_doc.py` from the `ErrorReason` enum of
[`proto/airlock/v1/errors.proto`](../proto/airlock/v1/errors.proto); do not edit by hand.

Every failed call carries a `google.rpc.Status` in the `grpc-status-details-bin` trailer with
exactly one `google.rpc.ErrorInfo`: `domain` is `airlock`, `reason` is one of the names below
(spelled exactly as here, and as the `airlock.v1.ErrorReason` value of that name), `metadata`
has lowerCamel keys naming the objects involved. Bad input adds a `google.rpc.BadRequest` naming
each field. The `google.rpc` definitions ship with the contract in `proto/google/rpc/`.

Branch on `reason`, never on the message. A reason this table does not list yet (a newer
server) is handled by its status code. The Python SDK exposes it as
`AirlockError.reason` (a string) and `AirlockError.error_reason` (the enum value).

Retry only `UNAVAILABLE` and `ABORTED` (`CONCURRENT_CHANGE`), and send a mutation's retries with
the same `request_id`, so that a retried call has at most one effect. The SDK's policy (10
attempts, full-jitter exponential backoff from 0.1 s, multiplier 2, at most 2 s: it rides
through a restart of a few seconds) is published as a gRPC service config,
`clients/airlock_client/service-config.json` (in the package too), for callers in other
languages: pass it as the channel's service config (for example `grpc.service_config` in
Python's channel options, `defaultServiceConfig` in grpc-java). gRPC libraries clamp
`maxAttempts` to 5 unless the channel raises the cap (grpc-java: `maxRetryAttempts(10)`).

## Adding a reason

1. Add a value at the end of `ErrorReason` in `proto/airlock/v1/errors.proto`, with the next
   number and a comment that starts with its status code (`FAILED_PRECONDITION: when ...`).
2. Add the same name to `Reason` in `server/airlock_server/domain/errors.py` and raise it
   (`FailedPrecondition("...", reason=Reason.NEW_REASON)`; a module constant standing for it,
   `NEW_REASON = Reason.NEW_REASON`, does as well). A reason is never a string literal and never
   built at run time.
3. Run `python scripts/gen_protos.py` and `python scripts/errors_doc.py`.

`tests/unit/test_error_reasons.py` fails when the two lists differ, when the server raises a
reason the enum lacks or with a status code its comment does not name, and when a value is
never raised.

## The reasons

| Reason | Status code | # | When |
| --- | --- | --- | --- |
"""


def render(entries: list[Entry] | None = None) -> str:
    rows = parse(PROTO.read_text(encoding="utf-8")) if entries is None else entries
    lines = [
        f"| `{e.name}` | {' or '.join(f'`{c}`' for c in e.codes)} | {e.number} | {e.when} |"
        for e in rows
        if e.number != 0
    ]
    return HEADER + "\n".join(lines) + "\n"


def main() -> int:
    return write_or_check(__doc__.splitlines()[0], DOC, render)


if __name__ == "__main__":
    sys.exit(main())

"""`airlock audit ...`: the tamper-evident event log (AuditService, admin and auditor): list, tail,
the signed checkpoint, verification."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from google.protobuf import json_format

from airlock.v1 import audit_service_pb2, common_pb2, event_pb2
from airlock_cli.base import EXIT_LOG_NOT_INTACT, CommandFailed, Group, add_command, add_family
from airlock_cli.follow import Reconnect
from airlock_cli.output import Output
from airlock_cli.values import time_arg
from airlock_client import checkpoints
from airlock_client.client import AirlockClient, principal_kind
from airlock_client.errors import AirlockError


class LogNotIntact(CommandFailed):
    """`airlock audit verify` found a problem (exit code 5); the output has said which."""

    exit_code = EXIT_LOG_NOT_INTACT

    def report(self) -> str:
        return ""


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


def _write_event(out: Output, e: event_pb2.Event) -> None:
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


async def _audit_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
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


async def _audit_tail(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    """Follows the log; after a lost connection (a restart of the server or of its database)
    it resumes after the last seq it saw, with backoff, saying so once per outage."""
    last = max(args.from_seq - 1, 0)
    shown = 0
    reconnect = Reconnect()
    while True:
        try:
            async for e in client.watch_events(after_seq=last):
                reconnect.received()
                last = e.seq
                if _type_matches(args.type, e.type):
                    _write_event(out, e)
                    shown += 1
                    if args.count and shown >= args.count:
                        return
            return
        except AirlockError as exc:
            await reconnect.lost(exc, f"resuming after seq {last}")


async def _audit_checkpoint(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    checkpoint = await client.get_log_checkpoint()
    checkpoints.verify_signature(checkpoint, checkpoint.public_key)
    if args.out:
        checkpoints.save(checkpoint, args.out)
    document = checkpoints.to_document(checkpoint)
    if args.out:
        document["saved_to"] = args.out
    out.document(document)


async def _audit_verify(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
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


def add_commands(commands: Group) -> None:
    group = add_family(commands, "audit", "the tamper-evident event log (admin, auditor)")
    p = add_command(group, "list", "list events, oldest first", _audit_list)
    p.add_argument("--type", default="", help='a type, or a family ending with "." (session.)')
    p.add_argument(
        "--actor", type=_actor_arg, metavar="KIND[:SUBJECT]", help="e.g. account:111122223333"
    )
    p.add_argument("--subject", default="", help="e.g. team:<id>, session:<id>, a vault ARN")
    p.add_argument("--since", type=time_arg, metavar="RFC3339", help="at or after")
    p.add_argument("--until", type=time_arg, metavar="RFC3339", help="before")
    p.add_argument("--after-seq", type=int, default=0, metavar="N", help="only seq > N")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N events")
    p = add_command(
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
    p = add_command(
        group, "checkpoint", "get the log's signed head; --out keeps it", _audit_checkpoint
    )
    p.add_argument("--out", metavar="FILE", help="save the checkpoint to this new file (JSON)")
    p = add_command(
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

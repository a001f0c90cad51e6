"""`airlock proof ...` and `airlock team keyring export`: approval proofs exported from the server
and verified offline, against approver keys pinned once."""

from __future__ import annotations

import argparse
import asyncio
import base64
from pathlib import Path

from airlock_cli.base import (
    EXIT_PROOF_REJECTED,
    EXIT_PROOF_UNANCHORED,
    EXIT_PROOF_UNPINNED,
    CommandFailed,
    Group,
    LocalError,
    add_command,
    add_family,
)
from airlock_cli.output import Output
from airlock_client import checkpoints, keys, proof
from airlock_client.client import AirlockClient


class ProofRejected(CommandFailed):
    """`airlock proof verify` said no."""

    exit_code = EXIT_PROOF_REJECTED
    heading = "proof rejected:\n"


class ProofUnanchored(CommandFailed):
    """`airlock proof verify` found nothing wrong, but was given no log key to trust."""

    exit_code = EXIT_PROOF_UNANCHORED
    heading = "proof not anchored:\n"


class ProofUnpinned(CommandFailed):
    """`airlock proof verify` found nothing wrong, but was given no approver keys to trust."""

    exit_code = EXIT_PROOF_UNPINNED
    heading = "proof not pinned:\n"


async def _proof_export(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
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


async def _proof_verify(args: argparse.Namespace, out: Output) -> None:
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
    client: AirlockClient, args: argparse.Namespace, out: Output
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


def add_commands(commands: Group) -> None:
    # team keyrings: approver keys pinned once for `proof verify`
    group = add_family(commands, "team", "a team's approver keys, to pin for proof verification")
    keyring = add_command(group, "keyring", "a team's keyring of approver keys")
    keyring_group = keyring.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = add_command(
        keyring_group,
        "export",
        "write the approver keys of a team's version in force to a keyring file",
        _team_keyring_export,
    )
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the keyring")

    # approval proofs
    group = add_family(commands, "proof", "approval proofs: export from the server, verify offline")
    p = add_command(
        group, "export", "write the approval proof of an APPROVED session", _proof_export
    )
    p.add_argument("session_id", metavar="SESSION_ID")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the proof")
    p = add_command(
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

"""Load generator for bench/run.py: a separate process, N coroutines over a few grpc.aio channels.

Subcommands (each prints one JSON object on stdout):

  setup  --target H:P --admin-token-file F
         an account (with its credential), two approvers (with credentials and Ed25519 keys)
         and an ACTIVE 2-of-2 team shared with the account: what `get` reads.
  pairs  --target H:P --admin-token-file F --count N --prefix P --out FILE
         N fresh pairs of approvers (credential + key each) appended to FILE, one JSON line
         per pair: what `flow` consumes, one pair per flow.
  recovery-setup --target H:P --admin-token-file F
         three approvers (credentials, Ed25519 keys), an ACTIVE 2-of-3 team shared with two
         accounts, the owner A and the recovery account R (credentials for both), and a
         service credential (CheckAccess): what `vote` and `restore` use.
  vaults --target H:P --state FILE --count N --prefix P --out FILE [--request]
         N vaults owned by A, each associated with the team, one JSON line each appended to
         FILE; with --request, R also requests restore access on each (the line then holds the
         session, serialized, for signing the votes): what `vote` consumes.
  reads-setup --target H:P --state FILE
         one vault of A, associated, R requests restore access and 2 approvers approve it:
         the session and the vault (grant AVAILABLE) that `session` and `check` read; prints
         the recovery state with `read_session_id` and `read_vault_arn` added.
  run    --mode echo|ref|get|session|check|flow|vote|restore --target H:P --conc C
         [--channels K] [--warmup S] [--duration S]
         closed loop: C coroutines each issue their next call as soon as the last returns;
         calls completing during the warm-up are discarded, then the calls completing in the
         measured window are counted and timed (latency = from the call to its response).
         `vote` is not time-boxed: it casts 2 signed APPROVE votes (2 of the 3 approvers,
         random) on every session of --vaults-file, all the votes in random order, and
         measures the whole drain (the server is warm from making the sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from airlock.v1 import (
    approver_service_pb2,
    approver_service_pb2_grpc,
    common_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    session_pb2,
    session_service_pb2,
    session_service_pb2_grpc,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
    vault_pb2,
    vault_service_pb2,
    vault_service_pb2_grpc,
)
from airlock_client.keys import sign_vote

REF_METHOD = "/bench.Reference/Insert"
ECHO_METHOD = "/bench.Reference/Echo"
REF_PAYLOAD = b"x" * 16
CLK_TCK = os.sysconf("SC_CLK_TCK")

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


# --- CPU accounting from /proc (all threads of a process) ---------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of one process, seconds; 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu() -> float:
    """CPU seconds of every live process named postgres (the cluster's backends and helpers)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres":
            total += proc_cpu(int(entry.name))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


@dataclass
class CpuSnap:
    server: float
    own: float
    pg: float
    busy: float
    total: float

    @classmethod
    def take(cls, server_pid: int | None, with_pg: bool) -> CpuSnap:
        busy, total = machine_busy()
        return cls(
            server=proc_cpu(server_pid) if server_pid else 0.0,
            own=proc_cpu(os.getpid()),
            pg=postgres_cpu() if with_pg else 0.0,
            busy=busy,
            total=total,
        )


# --- setup -----------------------------------------------------------------------------------


async def _create_approver(ident: Any, admin: Metadata, approver_id: str) -> dict[str, str]:
    await ident.CreateApprover(
        identity_service_pb2.CreateApproverRequest(
            approver_id=approver_id, display_name=approver_id, email=f"{approver_id}@bench.test"
        ),
        metadata=admin,
    )
    issued = await ident.IssueCredential(
        identity_service_pb2.IssueCredentialRequest(
            principal=common_pb2.Principal(
                kind=common_pb2.PRINCIPAL_KIND_APPROVER, subject=approver_id
            ),
            description="bench",
        ),
        metadata=admin,
    )
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {"id": approver_id, "token": issued.token, "key": private.hex()}


def _key(approver: dict[str, str]) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(approver["key"]))


async def _accept_all(
    appr: Any, team_id: str, approvers: Sequence[dict[str, str]]
) -> tuple[int, list[tuple[str, float, float]]]:
    """Each approver lists its pending invitation for the team and accepts it. Returns the
    team state after the last answer and (method, seconds, completion time) per call."""
    timings: list[tuple[str, float, float]] = []
    state = 0
    for a in approvers:
        md = bearer(a["token"])
        t0 = time.perf_counter()
        listed = await appr.ListInvitations(
            approver_service_pb2.ListInvitationsRequest(
                team_id=team_id, state=team_pb2.Invitation.STATE_PENDING
            ),
            metadata=md,
        )
        t1 = time.perf_counter()
        timings.append(("ListInvitations", t1 - t0, t1))
        invitations = [i for i in listed.invitations if i.team_id == team_id]
        if not invitations:
            raise RuntimeError(f"approver {a['id']} sees no pending invitation for {team_id}")
        inv = invitations[0].invitation_id
        key = _key(a)
        t0 = time.perf_counter()
        answered = await appr.RespondToInvitation(
            approver_service_pb2.RespondToInvitationRequest(
                invitation_id=inv,
                decision=approver_service_pb2.INVITATION_DECISION_ACCEPT,
                public_key=raw_public(key),
                key_proof=key.sign(inv.encode("utf-8")),
            ),
            metadata=md,
        )
        t1 = time.perf_counter()
        timings.append(("RespondToInvitation", t1 - t0, t1))
        state = answered.team_state
    return state, timings


async def cmd_setup(target: str, admin_token: str) -> dict[str, Any]:
    admin = bearer(admin_token)
    suffix = secrets.token_hex(3)
    async with grpc.aio.insecure_channel(target) as ch:
        ident = identity_service_pb2_grpc.IdentityServiceStub(ch)
        teams = team_service_pb2_grpc.TeamServiceStub(ch)
        appr = approver_service_pb2_grpc.ApproverServiceStub(ch)
        account_id = f"{secrets.randbelow(10**12):012d}"
        await ident.RegisterAccount(
            identity_service_pb2.RegisterAccountRequest(account_id=account_id, name="bench"),
            metadata=admin,
        )
        account = await ident.IssueCredential(
            identity_service_pb2.IssueCredentialRequest(
                principal=common_pb2.Principal(
                    kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject=account_id
                ),
                description="bench",
            ),
            metadata=admin,
        )
        approvers = [
            await _create_approver(ident, admin, f"bench-{suffix}-{n}") for n in ("a", "b")
        ]
        created = await teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name=f"bench-read-{suffix}",
                description="read by the GetApprovalTeam benchmark",
                approver_ids=[a["id"] for a in approvers],
                min_approvals=2,
            ),
            metadata=admin,
        )
        team_id = created.team.team_id
        state, _ = await _accept_all(appr, team_id, approvers)
        if state != team_pb2.ApprovalTeam.STATE_ACTIVE:
            raise RuntimeError(f"setup team is {state}, not ACTIVE")
        await teams.ShareTeam(
            team_service_pb2.ShareTeamRequest(
                team_id=team_id,
                principal=common_pb2.Principal(
                    kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject=account_id
                ),
            ),
            metadata=admin,
        )
        got = await teams.GetApprovalTeam(
            team_service_pb2.GetApprovalTeamRequest(team_id=team_id),
            metadata=bearer(account.token),
        )
        if got.team.state != team_pb2.ApprovalTeam.STATE_ACTIVE:
            raise RuntimeError("the account does not see an ACTIVE team")
    return {"team_id": team_id, "account_id": account_id, "account_token": account.token}


async def cmd_pairs(
    target: str, admin_token: str, count: int, prefix: str, out: Path
) -> dict[str, Any]:
    admin = bearer(admin_token)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    lines: list[str] = []
    t0 = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as ch:
        ident = identity_service_pb2_grpc.IdentityServiceStub(ch)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                pair = [await _create_approver(ident, admin, f"{prefix}-{i}-{s}") for s in "ab"]
                lines.append(json.dumps(pair))

        await asyncio.gather(*(worker() for _ in range(16)))
    with out.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return {"pairs": len(lines), "seconds": round(time.perf_counter() - t0, 2)}


# --- recovery (issue 3): a 2-of-3 team, vaults, restore-access sessions ----------------------


async def _token(ident: Any, admin: Metadata, kind: int, subject: str) -> str:
    issued = await ident.IssueCredential(
        identity_service_pb2.IssueCredentialRequest(
            principal=common_pb2.Principal(kind=kind, subject=subject),  # type: ignore[arg-type]
            description="bench",
        ),
        metadata=admin,
    )
    token: str = issued.token
    return token


async def cmd_recovery_setup(target: str, admin_token: str) -> dict[str, Any]:
    admin = bearer(admin_token)
    suffix = secrets.token_hex(3)
    async with grpc.aio.insecure_channel(target) as ch:
        ident = identity_service_pb2_grpc.IdentityServiceStub(ch)
        teams = team_service_pb2_grpc.TeamServiceStub(ch)
        appr = approver_service_pb2_grpc.ApproverServiceStub(ch)
        accounts: dict[str, dict[str, str]] = {}
        for role in ("owner", "recovery"):
            account_id = f"{secrets.randbelow(10**12):012d}"
            await ident.RegisterAccount(
                identity_service_pb2.RegisterAccountRequest(account_id=account_id, name=role),
                metadata=admin,
            )
            token = await _token(ident, admin, common_pb2.PRINCIPAL_KIND_ACCOUNT, account_id)
            accounts[role] = {"id": account_id, "token": token}
        approvers = [
            await _create_approver(ident, admin, f"guard-{suffix}-{n}") for n in ("a", "b", "c")
        ]
        created = await teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name=f"guardians-{suffix}",
                description="guards the vaults of the vote benchmark",
                approver_ids=[a["id"] for a in approvers],
                min_approvals=2,
            ),
            metadata=admin,
        )
        team_id = created.team.team_id
        state, _ = await _accept_all(appr, team_id, approvers)
        if state != team_pb2.ApprovalTeam.STATE_ACTIVE:
            raise RuntimeError(f"recovery team is {state}, not ACTIVE")
        for acc in accounts.values():
            await teams.ShareTeam(
                team_service_pb2.ShareTeamRequest(
                    team_id=team_id,
                    principal=common_pb2.Principal(
                        kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject=acc["id"]
                    ),
                ),
                metadata=admin,
            )
        checker = await _token(ident, admin, common_pb2.PRINCIPAL_KIND_SERVICE, f"dp-{suffix}")
    return {
        "team_id": team_id,
        "owner": accounts["owner"],
        "recovery": accounts["recovery"],
        "approvers": approvers,
        "checker_token": checker,
    }


async def _request(vaults: Any, recovery: Metadata, arn: str) -> Any:
    return await vaults.RequestRestoreAccess(
        vault_service_pb2.RequestRestoreAccessRequest(vault_arn=arn, comment="bench: A is gone"),
        metadata=recovery,
    )


async def cmd_vaults(
    target: str, rs: dict[str, Any], count: int, prefix: str, out: Path, request: bool
) -> dict[str, Any]:
    owner = bearer(rs["owner"]["token"])
    recovery = bearer(rs["recovery"]["token"])
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    lines: list[str] = []
    t0 = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as ch:
        vaults = vault_service_pb2_grpc.VaultServiceStub(ch)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                made = await vaults.CreateVault(
                    vault_service_pb2.CreateVaultRequest(
                        name=f"{prefix}-{i}", min_retention_days=7, max_retention_days=35
                    ),
                    metadata=owner,
                )
                arn = made.vault.vault_arn
                await vaults.AssociateApprovalTeam(
                    vault_service_pb2.AssociateApprovalTeamRequest(
                        vault_arn=arn, team_id=rs["team_id"]
                    ),
                    metadata=owner,
                )
                line: dict[str, str] = {"arn": arn}
                if request:
                    asked = await _request(vaults, recovery, arn)
                    line["session"] = asked.session.SerializeToString().hex()
                lines.append(json.dumps(line))

        await asyncio.gather(*(worker() for _ in range(16)))
    with out.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return {"vaults": len(lines), "seconds": round(time.perf_counter() - t0, 2)}


async def cmd_reads_setup(target: str, rs: dict[str, Any]) -> dict[str, Any]:
    """One approved restore-access session (grant AVAILABLE): what `session` and `check` read."""
    owner = bearer(rs["owner"]["token"])
    async with grpc.aio.insecure_channel(target) as ch:
        vaults = vault_service_pb2_grpc.VaultServiceStub(ch)
        voter = approver_service_pb2_grpc.ApproverServiceStub(ch)
        made = await vaults.CreateVault(
            vault_service_pb2.CreateVaultRequest(
                name=f"read-{secrets.token_hex(4)}", min_retention_days=7, max_retention_days=35
            ),
            metadata=owner,
        )
        arn = made.vault.vault_arn
        await vaults.AssociateApprovalTeam(
            vault_service_pb2.AssociateApprovalTeamRequest(vault_arn=arn, team_id=rs["team_id"]),
            metadata=owner,
        )
        asked = await _request(vaults, bearer(rs["recovery"]["token"]), arn)
        for who in rs["approvers"][:2]:
            voted = await _vote(voter, who, asked.session)
        if not _granted(voted.session):
            raise RuntimeError("the read session is not APPROVED+EXECUTED")
    return dict(rs, read_session_id=asked.session.session_id, read_vault_arn=arn)


# --- the closed-loop run ------------------------------------------------------------------


@dataclass
class Recorder:
    """Collects what completes inside the measured window [start, end)."""

    start: float = 0.0
    end: float = float("inf")
    calls: dict[str, list[float]] = field(default_factory=dict)
    flows: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def inside(self, t: float) -> bool:
        return self.start <= t < self.end

    def call(self, method: str, seconds: float, done: float) -> None:
        if self.inside(done):
            self.calls.setdefault(method, []).append(seconds)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    s = sorted(latencies)
    return {
        "count": len(s),
        "per_s": round(len(s) / seconds, 1),
        "p50_ms": round(percentile(s, 0.50) * 1000, 2),
        "p99_ms": round(percentile(s, 0.99) * 1000, 2),
        "mean_ms": round(sum(s) / len(s) * 1000, 2) if s else float("nan"),
    }


async def cmd_run(
    a: argparse.Namespace,
    state: dict[str, Any],
    pairs: list[list[dict[str, str]]],
    vault_lines: list[dict[str, str]],
) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(a.target) for _ in range(a.channels)]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    rec = Recorder()
    stop_at = float("inf")

    def make_worker(n: int) -> Callable[[], Awaitable[None]]:
        ch = channels[n % len(channels)]
        if a.mode in ("ref", "echo"):
            method, name = (REF_METHOD, "Insert") if a.mode == "ref" else (ECHO_METHOD, "Echo")
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(method)

            async def ref_once() -> None:
                t0 = time.perf_counter()
                await call(REF_PAYLOAD)
                t1 = time.perf_counter()
                rec.call(name, t1 - t0, t1)

            return ref_once
        if a.mode == "session":
            sessions = session_service_pb2_grpc.SessionServiceStub(ch)
            sreq = session_service_pb2.GetSessionRequest(session_id=state["read_session_id"])
            smd = bearer(state["recovery"]["token"])

            async def session_once() -> None:
                t0 = time.perf_counter()
                resp = await sessions.GetSession(sreq, metadata=smd)
                t1 = time.perf_counter()
                if resp.session.state != session_pb2.Session.STATE_APPROVED:
                    rec.error("session not APPROVED")
                rec.call("GetSession", t1 - t0, t1)

            return session_once
        if a.mode == "check":
            vstub = vault_service_pb2_grpc.VaultServiceStub(ch)
            creq = vault_service_pb2.CheckAccessRequest(
                vault_arn=state["read_vault_arn"], account_id=state["recovery"]["id"]
            )
            cmd = bearer(state["checker_token"])

            async def check_once() -> None:
                t0 = time.perf_counter()
                resp = await vstub.CheckAccess(creq, metadata=cmd)
                t1 = time.perf_counter()
                if not resp.allowed:
                    rec.error("access not allowed")
                rec.call("CheckAccess", t1 - t0, t1)

            return check_once
        if a.mode == "get":
            teams = team_service_pb2_grpc.TeamServiceStub(ch)
            req = team_service_pb2.GetApprovalTeamRequest(team_id=state["team_id"])
            md = bearer(state["account_token"])

            async def get_once() -> None:
                t0 = time.perf_counter()
                resp = await teams.GetApprovalTeam(req, metadata=md)
                t1 = time.perf_counter()
                if resp.team.state != team_pb2.ApprovalTeam.STATE_ACTIVE:
                    rec.error("not ACTIVE")
                rec.call("GetApprovalTeam", t1 - t0, t1)

            return get_once

        if a.mode == "restore":
            vaults = vault_service_pb2_grpc.VaultServiceStub(ch)
            voter = approver_service_pb2_grpc.ApproverServiceStub(ch)
            recovery = bearer(state["recovery"]["token"])

            async def restore_once() -> None:
                arn = next_vault()
                f0 = time.perf_counter()
                asked = await _request(vaults, recovery, arn)
                t1 = time.perf_counter()
                rec.call("RequestRestoreAccess", t1 - f0, t1)
                session = asked.session
                for who in random.sample(state["approvers"], 2):
                    t0 = time.perf_counter()
                    voted = await _vote(voter, who, session)
                    t1 = time.perf_counter()
                    rec.call("Vote", t1 - t0, t1)
                if not _granted(voted.session):
                    rec.error("session not APPROVED+EXECUTED after 2 votes")
                    return
                if rec.inside(t1):
                    rec.flows.append(t1 - f0)
                    granted.append(arn)

            return restore_once

        teams = team_service_pb2_grpc.TeamServiceStub(ch)
        appr = approver_service_pb2_grpc.ApproverServiceStub(ch)
        admin = bearer(state["admin_token"])

        async def flow_once() -> None:
            pair = next_pair()
            f0 = time.perf_counter()
            created = await teams.CreateApprovalTeam(
                team_service_pb2.CreateApprovalTeamRequest(
                    name=f"flow-{secrets.token_hex(8)}",
                    approver_ids=[p["id"] for p in pair],
                    min_approvals=2,
                ),
                metadata=admin,
            )
            t1 = time.perf_counter()
            rec.call("CreateApprovalTeam", t1 - f0, t1)
            team_state, timings = await _accept_all(appr, created.team.team_id, pair)
            done = time.perf_counter()
            for method, seconds, at in timings:
                rec.call(method, seconds, at)
            if team_state != team_pb2.ApprovalTeam.STATE_ACTIVE:
                rec.error("team not ACTIVE after both accepted")
            if rec.inside(done):
                rec.flows.append(done - f0)

        return flow_once

    used = a.pairs_offset
    wrapped = False
    vault_used = a.vaults_offset
    granted: list[str] = []

    def next_vault() -> str:
        nonlocal vault_used
        if vault_used >= len(vault_lines):
            raise RuntimeError("out of vaults (make more: the run cannot reuse a vault)")
        arn: str = vault_lines[vault_used]["arn"]
        vault_used += 1
        return arn

    def next_pair() -> list[dict[str, str]]:
        nonlocal used, wrapped
        if used >= len(pairs):
            used, wrapped = 0, True
        pair = pairs[used]
        used += 1
        return pair

    async def loop(n: int) -> None:
        once = make_worker(n)
        while time.perf_counter() < stop_at:
            try:
                await once()
            except grpc.aio.AioRpcError as err:
                rec.error(f"{err.code().name}: {err.details()}"[:200])
                await asyncio.sleep(0.01)
            except RuntimeError as err:
                rec.error(str(err)[:200])
                if "out of vaults" in str(err):
                    return

    t_begin = time.perf_counter()
    rec.start = t_begin + a.warmup
    rec.end = rec.start + a.duration
    stop_at = rec.end
    tasks = [asyncio.create_task(loop(n)) for n in range(a.conc)]
    await asyncio.sleep(max(0.0, rec.start - time.perf_counter()))
    with_pg = a.pg_cpu
    before = CpuSnap.take(a.server_pid, with_pg)
    await asyncio.sleep(max(0.0, rec.end - time.perf_counter()))
    after = CpuSnap.take(a.server_pid, with_pg)
    await asyncio.gather(*tasks)
    if a.mode == "restore":
        await _check_granted(channels[0], state, granted, rec)
    for ch in channels:
        await ch.close()

    seconds = a.duration
    calls = {m: _summary(v, seconds) for m, v in sorted(rec.calls.items())}
    total_calls = sum(len(v) for v in rec.calls.values())
    result: dict[str, Any] = {
        "mode": a.mode,
        "conc": a.conc,
        "channels": a.channels,
        "warmup_s": a.warmup,
        "duration_s": a.duration,
        "rpc_per_s": round(total_calls / seconds, 1),
        "calls": calls,
        "errors": rec.errors,
    }
    if a.mode in ("flow", "restore"):
        result["flows"] = _summary(rec.flows, seconds)
        result["pairs_used_until"] = used
        result["pairs_wrapped"] = wrapped
        result["vaults_used_until"] = vault_used
        all_lat = sorted(x for v in rec.calls.values() for x in v)
    else:
        all_lat = sorted(next(iter(rec.calls.values()), []))
    result["p50_ms"] = round(percentile(all_lat, 0.5) * 1000, 2)
    result["p99_ms"] = round(percentile(all_lat, 0.99) * 1000, 2)
    if total_calls:
        per_call = 1e6 / total_calls
        result["cpu_us_per_rpc"] = {
            "server": round((after.server - before.server) * per_call),
            "loadgen": round((after.own - before.own) * per_call),
            "postgres": round((after.pg - before.pg) * per_call) if with_pg else None,
        }
    dt = after.total - before.total
    result["machine_busy"] = round((after.busy - before.busy) / dt, 3) if dt else None
    # Other work on the machine (another session's tests, say) shows here and in machine_busy.
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return result


def _granted(session: session_pb2.Session) -> bool:
    return (
        session.state == session_pb2.Session.STATE_APPROVED
        and session.execution_status == session_pb2.Session.EXECUTION_STATUS_EXECUTED
    )


async def _vote(voter: Any, who: dict[str, str], session: session_pb2.Session) -> Any:
    """One signed APPROVE vote: Ed25519 over the session's vote digest (airlock_client.keys)."""
    return await voter.Vote(
        approver_service_pb2.VoteRequest(
            session_id=session.session_id,
            decision=session_pb2.VOTE_DECISION_APPROVE,
            signature=sign_vote(_key(who), session, True),
            request_id=str(uuid.uuid4()),  # as the SDK sends every mutation
        ),
        metadata=bearer(who["token"]),
    )


async def _check_granted(
    ch: grpc.aio.Channel, state: dict[str, Any], arns: list[str], rec: Recorder
) -> None:
    """After the run, not timed: CheckAccess on up to 10 vaults whose session was approved
    shows R allowed with the grant AVAILABLE."""
    vaults = vault_service_pb2_grpc.VaultServiceStub(ch)
    for arn in arns[:10]:
        got = await vaults.CheckAccess(
            vault_service_pb2.CheckAccessRequest(vault_arn=arn, account_id=state["recovery"]["id"]),
            metadata=bearer(state["checker_token"]),
        )
        if not got.allowed or got.grant.state != vault_pb2.RestoreAccessGrant.STATE_AVAILABLE:
            rec.error("grant not AVAILABLE after the session was approved")


async def cmd_vote(
    a: argparse.Namespace, state: dict[str, Any], vault_lines: list[dict[str, str]]
) -> dict[str, Any]:
    """Every session of vault_lines gets 2 signed APPROVE votes (2 of the 3 approvers, picked
    at random), all votes in one random order, drained by C coroutines; the whole drain is
    measured (the server is warm: it has just made the sessions)."""
    sessions = [
        session_pb2.Session.FromString(bytes.fromhex(line["session"])) for line in vault_lines
    ]
    votes = [(s, who) for s in sessions for who in random.sample(state["approvers"], 2)]
    random.shuffle(votes)
    signed = [(s, who, sign_vote(_key(who), s, True)) for s, who in votes]  # signing is not timed
    queue: asyncio.Queue[tuple[session_pb2.Session, dict[str, str], bytes]] = asyncio.Queue()
    for v in signed:
        queue.put_nowait(v)
    channels = [grpc.aio.insecure_channel(a.target) for _ in range(a.channels)]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    rec = Recorder()
    granted: list[str] = []
    arn_of = {s.session_id: line["arn"] for s, line in zip(sessions, vault_lines, strict=True)}

    async def worker(n: int) -> None:
        voter = approver_service_pb2_grpc.ApproverServiceStub(channels[n % len(channels)])
        while True:
            try:
                session, who, signature = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                resp = await voter.Vote(
                    approver_service_pb2.VoteRequest(
                        session_id=session.session_id,
                        decision=session_pb2.VOTE_DECISION_APPROVE,
                        signature=signature,
                        request_id=str(uuid.uuid4()),  # as the SDK sends every mutation
                    ),
                    metadata=bearer(who["token"]),
                )
            except grpc.aio.AioRpcError as err:
                rec.error(f"{err.code().name}: {err.details()}"[:200])
                continue
            t1 = time.perf_counter()
            rec.call("Vote", t1 - t0, t1)
            if _granted(resp.session):
                granted.append(arn_of[session.session_id])

    with_pg = a.pg_cpu
    before = CpuSnap.take(a.server_pid, with_pg)
    t_begin = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(a.conc)))
    seconds = time.perf_counter() - t_begin
    after = CpuSnap.take(a.server_pid, with_pg)
    if len(granted) != len(sessions):
        rec.errors["sessions not APPROVED+EXECUTED after 2 votes"] = len(sessions) - len(granted)
    await _check_granted(channels[0], state, granted, rec)
    for ch in channels:
        await ch.close()
    lat = sorted(rec.calls.get("Vote", []))
    result: dict[str, Any] = {
        "mode": "vote",
        "conc": a.conc,
        "channels": a.channels,
        "warmup_s": 0,
        "duration_s": round(seconds, 2),
        "sessions": len(sessions),
        "sessions_granted": len(granted),
        "rpc_per_s": round(len(lat) / seconds, 1),
        "calls": {"Vote": _summary(lat, seconds)},
        "errors": rec.errors,
        "p50_ms": round(percentile(lat, 0.5) * 1000, 2),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
    }
    if lat:
        per_call = 1e6 / len(lat)
        result["cpu_us_per_rpc"] = {
            "server": round((after.server - before.server) * per_call),
            "loadgen": round((after.own - before.own) * per_call),
            "postgres": round((after.pg - before.pg) * per_call) if with_pg else None,
        }
    dt = after.total - before.total
    result["machine_busy"] = round((after.busy - before.busy) / dt, 3) if dt else None
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--target", required=True)
    s.add_argument("--admin-token-file", type=Path, required=True)
    pr = sub.add_parser("pairs")
    pr.add_argument("--target", required=True)
    pr.add_argument("--admin-token-file", type=Path, required=True)
    pr.add_argument("--count", type=int, required=True)
    pr.add_argument("--prefix", required=True)
    pr.add_argument("--out", type=Path, required=True)
    rs = sub.add_parser("recovery-setup")
    rs.add_argument("--target", required=True)
    rs.add_argument("--admin-token-file", type=Path, required=True)
    v = sub.add_parser("vaults")
    v.add_argument("--target", required=True)
    v.add_argument("--state", type=Path, required=True, help="JSON from recovery-setup")
    v.add_argument("--count", type=int, required=True)
    v.add_argument("--prefix", required=True)
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--request", action="store_true", help="R requests restore access on each")
    rd = sub.add_parser("reads-setup")
    rd.add_argument("--target", required=True)
    rd.add_argument("--state", type=Path, required=True, help="JSON from recovery-setup")
    r = sub.add_parser("run")
    r.add_argument(
        "--mode",
        choices=["echo", "ref", "get", "session", "check", "flow", "vote", "restore"],
        required=True,
    )
    r.add_argument("--target", required=True)
    r.add_argument("--conc", type=int, default=16)
    r.add_argument("--channels", type=int, default=4)
    r.add_argument("--warmup", type=float, default=2.0)
    r.add_argument("--duration", type=float, default=10.0)
    r.add_argument("--state", help="JSON from setup (+ admin_token) for get and flow")
    r.add_argument("--pairs-file", help="approver pairs for flow")
    r.add_argument("--pairs-offset", type=int, default=0)
    r.add_argument("--vaults-file", help="vaults (vote: with sessions) for vote and restore")
    r.add_argument("--vaults-offset", type=int, default=0)
    r.add_argument("--server-pid", type=int, help="whose CPU to account")
    r.add_argument("--pg-cpu", action="store_true", help="account PostgreSQL's CPU too")
    a = p.parse_args(argv)
    if a.cmd == "setup":
        token = a.admin_token_file.read_text().strip()
        out = asyncio.run(cmd_setup(a.target, token))
    elif a.cmd == "pairs":
        token = a.admin_token_file.read_text().strip()
        out = asyncio.run(cmd_pairs(a.target, token, a.count, a.prefix, a.out))
    elif a.cmd == "recovery-setup":
        token = a.admin_token_file.read_text().strip()
        out = asyncio.run(cmd_recovery_setup(a.target, token))
    elif a.cmd == "vaults":
        rstate = json.loads(a.state.read_text())
        out = asyncio.run(cmd_vaults(a.target, rstate, a.count, a.prefix, a.out, a.request))
    elif a.cmd == "reads-setup":
        out = asyncio.run(cmd_reads_setup(a.target, json.loads(a.state.read_text())))
    else:
        state = json.loads(Path(a.state).read_text()) if a.state else {}
        pairs = []
        if a.mode == "flow":
            with open(a.pairs_file) as f:
                pairs = [json.loads(line) for line in f]
        vault_lines: list[dict[str, str]] = []
        if a.mode in ("vote", "restore"):
            with open(a.vaults_file) as f:
                vault_lines = [json.loads(line) for line in f]
        if a.mode == "vote":
            out = asyncio.run(cmd_vote(a, state, vault_lines[a.vaults_offset :]))
        else:
            out = asyncio.run(cmd_run(a, state, pairs, vault_lines))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

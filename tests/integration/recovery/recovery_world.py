"""Helpers of the recovery-flow tests (a conftest is not importable).

A world for the recovery flow: the app wired on each backend, a team of three approvers with
Ed25519 keys (M = 2), a vault owner account and a recovery account the team is shared with.

Builds on the `database_url` fixture (a migrated database of its own per test, on SQLite and on
PostgreSQL) of tests/conftest.py, and on the server's own wiring (integration/harness.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from integration.harness import FakeClock, Harness, build_harness

from airlock_client.proof import event_hash
from airlock_server.app.audit import LogKey
from airlock_server.app.sessions import SessionView
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import Session, VoteDecision, vote_digest
from airlock_server.domain.teams import TeamSpec, key_proof_message

OWNER = "111111111111"
RECOVERY = "222222222222"
STRANGER = "333333333333"
APPROVERS = ("alice", "bob", "carol")


def raw_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def replica(url: str, clock: FakeClock, log_key: LogKey | None = None) -> Harness:
    """One server's wiring (own engine and pool) on the database, in region eu-west-1, its
    watchers quick to see what other replicas commit; with `log_key`, approval proofs carry a
    signed checkpoint."""
    return build_harness(url, clock, log_key, region="eu-west-1", poll=0.02, watch_poll=0.02)


@dataclass
class World:
    url: str
    clock: FakeClock
    app: Harness
    admin: Principal
    team_id: str
    keys: dict[str, Ed25519PrivateKey]
    wirings: list[Harness] = field(default_factory=list)
    log_key: LogKey | None = None  # the key of `app`: its approval proofs are signed with it

    owner = Principal(PrincipalKind.ACCOUNT, OWNER)
    recovery = Principal(PrincipalKind.ACCOUNT, RECOVERY)
    stranger = Principal(PrincipalKind.ACCOUNT, STRANGER)
    service = Principal(PrincipalKind.SERVICE, "billing")
    auditor = Principal(PrincipalKind.AUDITOR, "")

    @staticmethod
    def approver(name: str) -> Principal:
        return Principal(PrincipalKind.APPROVER, name)

    def another_wiring(self, *, keyless: bool = False) -> Harness:
        """Another replica of the server: same log key (it signs and MACs what it writes), or,
        `keyless`, a server without one (it writes nothing, or the keyed replicas refuse it)."""
        w = replica(self.url, self.clock, None if keyless else self.log_key)
        self.wirings.append(w)
        return w

    def pins(self, *names: str) -> list[bytes]:
        """The approvers' public keys as a verifier pins them (all of the team's by default)."""
        return [raw_key(self.keys[n]) for n in names or APPROVERS]

    def sign(self, name: str, session: Session, decision: VoteDecision) -> bytes:
        return self.keys[name].sign(vote_digest(session, decision))

    async def vote(
        self,
        name: str,
        session_id: str,
        decision: VoteDecision = VoteDecision.APPROVE,
        app: Harness | None = None,
        comment: str = "",
    ) -> SessionView:
        app = app or self.app
        current = await app.sessions.get_session(self.admin, session_id)
        return await app.sessions.vote(
            self.approver(name),
            session_id,
            decision,
            comment,
            self.sign(name, current.session, decision),
            "",
        )

    async def make_team(self, name: str, approvers: tuple[str, ...] = APPROVERS, m: int = 2) -> str:
        team = await self.app.teams.create_team(
            self.admin,
            TeamSpec(name, "", approvers, m, timedelta(hours=24), timedelta(hours=24)),
            "",
        )
        for member in team.current.members:
            key = self.keys[member.approver_id]
            await self.app.teams.respond_to_invitation(
                self.approver(member.approver_id),
                member.invitation_id,
                True,
                raw_key(key),
                key.sign(key_proof_message(member.invitation_id)),
                "",
            )
        return team.team_id

    async def share(self, team_id: str, principal: Principal) -> None:
        await self.app.teams.share(self.admin, team_id, principal.kind, principal.subject, "")

    async def vault(self, name: str = "prod-lag", team_id: str | None = None) -> str:
        vault = await self.app.vaults.create_vault(self.owner, "", name, 7, 35, {"env": "p"}, "")
        await self.app.vaults.associate(
            self.owner, vault.vault_arn, team_id or self.team_id, "", ""
        )
        return vault.vault_arn


def rehash(events: list[dict[str, Any]]) -> None:
    """What a forger who also controls the log does to a proof's events: recompute each hash
    and relink consecutive ones."""
    previous: tuple[int, str] | None = None
    for e in events:
        if previous is not None and e["seq"] == previous[0] + 1:
            e["prev_hash"] = previous[1]
        e["hash"] = event_hash(
            seq=e["seq"],
            time=e["time"],
            type_=e["type"],
            actor=e["actor"],
            subjects=e["subjects"],
            details=e["details"],
            prev_hash=e["prev_hash"],
        )
        previous = (e["seq"], e["hash"])

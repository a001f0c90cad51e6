"""The approval portal's use cases: invitation links, passkey registration, sign-in, votes.

The portal is one more adapter over the same use cases: accepting, declining and voting go
through TeamService.respond_to_invitation and SessionService.vote, with the approver as the
actor and `channel: "portal"` in the event. What is the portal's own: the one-time invitation
link (the secret that names the approver before it has a key), the WebAuthn challenges (single
use, short-lived, stored as hashes), and the passkeys' signature counters.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidJSONStructure, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from airlock_server.app import passkey_uses, signing
from airlock_server.app.common import Deps, Done, run_once, transact
from airlock_server.app.ports import UnitOfWork
from airlock_server.app.sessions import SessionService, SessionView
from airlock_server.app.teams import InvitationView, TeamService, settle_team
from airlock_server.domain.errors import (
    APPROVER_DISABLED,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from airlock_server.domain.principals import Principal, PrincipalKind, require, require_admin
from airlock_server.domain.sessions import VoteDecision, vote_digest
from airlock_server.domain.team_changes import invitable_version
from airlock_server.domain.team_events import invitation_link_issued
from airlock_server.domain.teams import InvitationState, Team, TeamMember, TeamState, TeamVersion
from airlock_server.domain.webauthn import (
    EDDSA,
    ES256,
    Assertion,
    InvitationLink,
    PasskeyCredential,
    PasskeyKey,
    RelyingParty,
    b64url,
    bad_assertion,
    decode_passkey_key,
    from_b64url,
    invite_url,
    is_passkey_key,
    token_digest,
)

# A browser has this long to answer a registration or sign-in challenge.
CHALLENGE_TTL = timedelta(minutes=5)
TIMEOUT_MS = 120_000
REGISTER = "register"
SIGN_IN = "sign_in"
PORTAL = "portal"
_ALGORITHMS = [COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.EDDSA]


@dataclass(frozen=True)
class InvitationDetails:
    """What an invitation link shows its approver before it answers."""

    invitation_id: str
    approver_id: str
    team_id: str
    team_name: str
    version: int
    description: str
    min_approvals: int
    approver_ids: tuple[str, ...]
    session_ttl: timedelta
    invitation_ttl: timedelta
    expire_time: datetime
    state: InvitationState


def _link_not_found() -> NotFound:
    # Never the token itself in an error: it is the secret.
    return NotFound("invitation", "(invitation link)")


def _challenge_invalid() -> FailedPrecondition:
    return FailedPrecondition(
        "this WebAuthn challenge is unknown, already used or expired; start again",
        reason=Reason.PASSKEY_CHALLENGE_INVALID,
    )


def _not_addressee(invitation_id: str) -> PermissionDenied:
    return PermissionDenied(
        "this invitation is addressed to another approver",
        metadata={"invitationId": invitation_id},
    )


def _client_challenge(client_data_json: bytes) -> str:
    """The challenge (base64url) the browser says it answered; the signature check proves it."""
    try:
        client = json.loads(client_data_json.decode("utf-8"))
        challenge = client["challenge"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument.field("credential", "the client data names no challenge") from exc
    if not isinstance(challenge, str):
        raise InvalidArgument.field("credential", "the client data names no challenge")
    return challenge


def parse_assertion(credential_json: str) -> tuple[AuthenticationCredential, Assertion]:
    """A browser's `credential.toJSON()` of an assertion, and its Airlock encoding."""
    try:
        credential = parse_authentication_credential_json(credential_json)
    except (InvalidJSONStructure, ValueError, TypeError) as exc:
        raise InvalidArgument.field("credential", "not a WebAuthn assertion (JSON)") from exc
    r = credential.response
    return credential, Assertion(r.authenticator_data, r.client_data_json, r.signature)


def passkey_key_of(rp: RelyingParty, credential_id: bytes, cose_public_key: bytes) -> PasskeyKey:
    """The passkey key encoding of a registered credential (ES256 or EdDSA)."""
    decoded = decode_credential_public_key(cose_public_key)
    alg = int(decoded.alg) if getattr(decoded, "alg", None) is not None else 0
    if alg not in (ES256, EDDSA):
        raise InvalidArgument.field("credential", "a passkey must be ES256 or EdDSA")
    public = decoded_public_key_to_cryptography(decoded)
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return PasskeyKey(rp.rp_id, rp.origin, alg, credential_id, der)


def in_force(team: Team, passkey: PasskeyCredential) -> bool:
    """The passkey is the key its approver holds in the team's version in force or its open
    draft (a replaced key, a deleted team: no longer)."""
    if team.state is TeamState.DELETED:
        return False
    for version in (team.current, team.pending):
        member = version.member(passkey.approver_id) if version else None
        if member is not None and member.public_key == passkey.public_key:
            return True
    return False


@dataclass(frozen=True)
class IssuedLink:
    """A one-time invitation link, shown once."""

    token: str
    url: str  # "" when the server knows no portal address
    expire_time: datetime


class InvitationLinks:
    """Issuing one-time invitation links (IssueInvitationLink): needs no WebAuthn settings."""

    def __init__(self, deps: Deps, portal_url: str = "") -> None:
        self._deps = deps
        self._portal_url = portal_url

    async def issue(
        self, caller: Principal, invitation_id: str, request_id: str = ""
    ) -> IssuedLink:
        """A new link for a PENDING, open invitation; any earlier link of it stops working.
        Only its SHA-256 is stored: the token is shown here once, so a replay of the same
        request_id issues nothing and returns an empty token (ask again without it)."""
        require_admin(caller)
        token = secrets.token_urlsafe(32)

        async def act(uow: UnitOfWork) -> Done[IssuedLink]:
            now = self._deps.clock()
            found = await _invitation(uow, invitation_id, now)
            if found is None:
                raise NotFound("invitation", invitation_id)
            shown, version, member = found
            if member.invitation_state is not InvitationState.PENDING:
                raise FailedPrecondition(
                    f"invitation {invitation_id} is {member.invitation_state.value}",
                    reason=Reason.INVITATION_ALREADY_ANSWERED,
                    metadata={"invitationId": invitation_id},
                )
            _require_open(shown, version.version)
            await uow.passkeys.add_link(InvitationLink(token_digest(token), invitation_id, now))
            uow.record(invitation_link_issued(caller, shown.team_id, member, version.version))
            url = invite_url(self._portal_url, token) if self._portal_url else ""
            return Done(invitation_id, IssuedLink(token, url, version.invitation_expire_time))

        async def read(uow: UnitOfWork, invitation_id: str) -> IssuedLink:
            # The first call found it; invitations are never deleted.
            again = await _invitation(uow, invitation_id, self._deps.clock())
            assert again is not None
            return IssuedLink("", "", again[1].invitation_expire_time)

        return await run_once(self._deps, caller, "IssueInvitationLink", request_id, act, read)


async def _invitation(
    uow: UnitOfWork, invitation_id: str, now: datetime
) -> tuple[Team, TeamVersion, TeamMember] | None:
    """The invitation's team as a read sees it (settled), its version and its member."""
    team = await uow.teams.find_by_invitation(invitation_id)
    if team is None:
        return None
    shown = settle_team(team, now)
    for version in (shown.current, shown.pending):
        for member in version.members if version else ():
            if member.invitation_id == invitation_id:
                assert version is not None
                return shown, version, member
    return None


def _require_open(team: Team, version: int) -> None:
    open_version = invitable_version(team)
    if open_version is None or open_version.version != version:
        raise FailedPrecondition(
            f"the team is {team.state.value} ({team.status.value}); this invitation is closed",
            reason=Reason.INVITATION_CLOSED,
            metadata={"teamId": team.team_id, "state": team.state.value},
        )


class PortalService:
    def __init__(
        self, deps: Deps, teams: TeamService, sessions: SessionService, rp: RelyingParty
    ) -> None:
        self._deps = deps
        self._teams = teams
        self._sessions = sessions
        self.rp = rp

    # --- invitation links ------------------------------------------------------------------

    async def issue_invitation_link(self, caller: Principal, invitation_id: str) -> str:
        """A new one-time link token for a pending invitation (the admin hands it over)."""
        return (
            await InvitationLinks(self._deps, self.rp.origin).issue(caller, invitation_id)
        ).token

    async def _details(
        self, uow: UnitOfWork, token: str, caller: Principal | None
    ) -> InvitationDetails:
        link = await uow.passkeys.find_link(token_digest(token))
        if link is None or link.spent_time is not None:
            raise _link_not_found()
        found = await _invitation(uow, link.invitation_id, self._deps.clock())
        if found is None:
            raise _link_not_found()
        shown, version, member = found
        if caller is not None and (
            caller.kind is not PrincipalKind.APPROVER or caller.subject != member.approver_id
        ):
            raise _not_addressee(link.invitation_id)
        _require_open(shown, version.version)
        if member.invitation_state is not InvitationState.PENDING:
            raise _link_not_found()  # answered: its link is spent
        return InvitationDetails(
            invitation_id=link.invitation_id,
            approver_id=member.approver_id,
            team_id=shown.team_id,
            team_name=shown.name,
            version=version.version,
            description=version.description,
            min_approvals=version.min_approvals,
            approver_ids=tuple(m.approver_id for m in version.members),
            session_ttl=version.session_ttl,
            invitation_ttl=version.invitation_ttl,
            expire_time=version.invitation_expire_time,
            state=member.invitation_state,
        )

    async def invitation_by_link(self, token: str, caller: Principal | None) -> InvitationDetails:
        async def work(uow: UnitOfWork) -> InvitationDetails:
            return await self._details(uow, token, caller)

        return await transact(self._deps, work, read_only=True)

    # --- registration: accepting with a passkey ----------------------------------------------

    async def _new_challenge(self, uow: UnitOfWork, purpose: str, subject: str) -> bytes:
        challenge = secrets.token_bytes(32)
        expire = self._deps.clock() + CHALLENGE_TTL
        await uow.passkeys.add_challenge(token_digest(b64url(challenge)), purpose, subject, expire)
        return challenge

    async def _take_challenge(self, challenge: str, purpose: str) -> str:
        """The challenge's subject; it is spent whatever the answer then turns out to be."""

        async def work(uow: UnitOfWork) -> str:
            taken = await uow.passkeys.take_challenge(token_digest(challenge), purpose)
            await uow.passkeys.drop_expired_challenges(self._deps.clock())
            await uow.commit()
            if taken is None or taken[1] <= self._deps.clock():
                raise _challenge_invalid()
            return taken[0]

        return await transact(self._deps, work)

    async def begin_registration(self, token: str, caller: Principal | None) -> str:
        """Creation options (JSON) for a passkey answering the link's invitation."""

        async def work(uow: UnitOfWork) -> str:
            details = await self._details(uow, token, caller)
            challenge = await self._new_challenge(uow, REGISTER, details.invitation_id)
            options = generate_registration_options(
                rp_id=self.rp.rp_id,
                rp_name=self.rp.name,
                user_name=details.approver_id,
                # One passkey per approver and team: a second registration on the same device
                # must not replace the passkey of another team.
                user_id=hashlib.sha256(
                    f"{details.approver_id}/{details.team_id}".encode()
                ).digest(),
                user_display_name=f"{details.approver_id} ({details.team_name})",
                challenge=challenge,
                timeout=TIMEOUT_MS,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED,
                    user_verification=UserVerificationRequirement.REQUIRED,
                ),
                supported_pub_key_algs=_ALGORITHMS,
            )
            await uow.commit()
            return options_to_json(options)

        return await transact(self._deps, work)

    async def finish_registration(
        self, token: str, credential_json: str, caller: Principal | None, request_id: str
    ) -> InvitationView:
        """Accept the link's invitation with the passkey just registered (browser's
        `credential.toJSON()`): it becomes the approver's key in this team version."""
        try:
            credential = parse_registration_credential_json(credential_json)
        except (InvalidJSONStructure, ValueError, TypeError) as exc:
            raise InvalidArgument.field("credential", "not a WebAuthn registration (JSON)") from exc
        challenge = _client_challenge(credential.response.client_data_json)
        details = await self.invitation_by_link(token, caller)
        if await self._take_challenge(challenge, REGISTER) != details.invitation_id:
            raise _challenge_invalid()
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=from_b64url(challenge),
                expected_rp_id=self.rp.rp_id,
                expected_origin=self.rp.origin,
                require_user_verification=True,
                supported_pub_key_algs=_ALGORITHMS,
            )
        except InvalidRegistrationResponse as exc:
            raise bad_assertion("credential", f"the registration does not verify: {exc}") from exc
        key = passkey_key_of(self.rp, verified.credential_id, verified.credential_public_key)
        encoded = key.encode()
        passkey = PasskeyCredential(
            credential_id=b64url(verified.credential_id),
            approver_id=details.approver_id,
            team_id=details.team_id,
            invitation_id=details.invitation_id,
            public_key=encoded,
            cose_public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            create_time=self._deps.clock(),
        )
        return await self._teams.respond_to_invitation(
            Principal(PrincipalKind.APPROVER, details.approver_id),
            details.invitation_id,
            True,
            encoded,
            b"",
            request_id,
            channel=PORTAL,
            passkey=passkey,
        )

    async def decline(
        self, token: str, caller: Principal | None, request_id: str
    ) -> InvitationView:
        details = await self.invitation_by_link(token, caller)
        return await self._teams.respond_to_invitation(
            Principal(PrincipalKind.APPROVER, details.approver_id),
            details.invitation_id,
            False,
            b"",
            b"",
            request_id,
            channel=PORTAL,
        )

    # --- sign-in -------------------------------------------------------------------------------

    async def begin_sign_in(self) -> str:
        """Request options (JSON) for signing in with any enrolled passkey (discoverable)."""

        async def work(uow: UnitOfWork) -> str:
            challenge = await self._new_challenge(uow, SIGN_IN, "")
            options = generate_authentication_options(
                rp_id=self.rp.rp_id,
                challenge=challenge,
                timeout=TIMEOUT_MS,
                user_verification=UserVerificationRequirement.REQUIRED,
            )
            await uow.commit()
            return options_to_json(options)

        return await transact(self._deps, work)

    async def finish_sign_in(self, credential_json: str) -> Principal:
        """The approver whose enrolled passkey answered a sign-in challenge."""
        credential, assertion = parse_assertion(credential_json)
        challenge = _client_challenge(assertion.client_data_json)
        await self._take_challenge(challenge, SIGN_IN)

        async def work(uow: UnitOfWork) -> Principal:
            passkey = await uow.passkeys.get(credential.id, for_update=True)
            if passkey is None:
                raise passkey_uses.not_enrolled("")
            signing.verify_passkey(
                passkey.public_key, assertion.encode(), from_b64url(challenge), "credential"
            )
            team = await uow.teams.get(passkey.team_id)
            if team is None or not in_force(team, passkey):
                raise passkey_uses.not_enrolled(passkey.approver_id)
            await self._require_enabled(uow, passkey.approver_id)
            await passkey_uses.count_use(uow, passkey, assertion.sign_count, self._deps.clock())
            await uow.commit()
            return Principal(PrincipalKind.APPROVER, passkey.approver_id)

        return await transact(self._deps, work)

    @staticmethod
    async def _require_enabled(uow: UnitOfWork, approver_id: str) -> None:
        approver = await uow.approvers.get(approver_id)
        if approver is None or not approver.enabled:
            raise FailedPrecondition(
                f"approver {approver_id!r} is disabled and cannot sign in",
                reason=APPROVER_DISABLED,
                metadata={"approverId": approver_id},
            )

    async def check_signed_in(self, caller: Principal) -> None:
        """A signed-in approver is still enabled (checked on every request of its cookie)."""
        require(caller, PrincipalKind.APPROVER)

        async def work(uow: UnitOfWork) -> None:
            await self._require_enabled(uow, caller.subject)

        await transact(self._deps, work, read_only=True)

    # --- votes ---------------------------------------------------------------------------------

    async def vote_options(self, caller: Principal, session_id: str, decision: VoteDecision) -> str:
        """Request options (JSON) whose challenge is the vote digest of (session, decision):
        the passkey signs exactly this request and this decision."""
        view = await self._sessions.get_session(caller, session_id)
        s = view.session

        async def work(uow: UnitOfWork) -> bytes:
            keys = await uow.teams.enrolled_keys(s.team_id, s.team_version)
            return keys.get(caller.subject) or b""

        key = await transact(self._deps, work, read_only=True)
        if not is_passkey_key(key):
            raise FailedPrecondition(
                f"approver {caller.subject!r} enrolled no passkey in team version {s.team_version}",
                reason=Reason.NO_KEY_ENROLLED,
                metadata={"sessionId": session_id},
            )
        credential_id = decode_passkey_key(key).credential_id
        options = generate_authentication_options(
            rp_id=self.rp.rp_id,
            challenge=vote_digest(s, decision),
            timeout=TIMEOUT_MS,
            allow_credentials=[PublicKeyCredentialDescriptor(id=credential_id)],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return options_to_json(options)

    async def vote(
        self,
        caller: Principal,
        session_id: str,
        decision: VoteDecision,
        comment: str,
        credential_json: str,
        request_id: str,
    ) -> SessionView:
        """Cast the vote the passkey signed (browser's `credential.toJSON()`): SessionService.vote
        with the assertion as the signature, the channel "portal"."""
        _, assertion = parse_assertion(credential_json)
        return await self._sessions.vote(
            caller, session_id, decision, comment, assertion.encode(), request_id, channel=PORTAL
        )

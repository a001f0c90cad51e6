"""IdentityService: request to use case to response, nothing more."""

from __future__ import annotations

from airlock.v1 import identity_pb2, identity_service_pb2_grpc
from airlock.v1 import identity_service_pb2 as pb
from airlock_server.app.common import utcnow
from airlock_server.app.identity import IdentityService
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.principals import Principal
from airlock_server.transport import convert
from airlock_server.transport.authentication import Ctx, current_caller, current_principal

_CREDENTIAL_STATES = {
    identity_pb2.Credential.STATE_ACTIVE: "active",
    identity_pb2.Credential.STATE_EXPIRED: "expired",
    identity_pb2.Credential.STATE_REVOKED: "revoked",
}


class IdentityServicer(identity_service_pb2_grpc.IdentityServiceServicer):
    def __init__(self, identities: IdentityService) -> None:
        self._app = identities

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Ctx) -> pb.WhoAmIResponse:
        caller = current_caller()
        return pb.WhoAmIResponse(
            principal=convert.principal_pb(caller.principal), credential_id=caller.credential_id
        )

    async def CreateApprover(
        self, request: pb.CreateApproverRequest, context: Ctx
    ) -> pb.CreateApproverResponse:
        approver = await self._app.create_approver(
            current_principal(),
            request.approver_id,
            request.display_name,
            request.email,
            request.request_id,
        )
        return pb.CreateApproverResponse(approver=convert.approver_pb(approver))

    async def GetApprover(
        self, request: pb.GetApproverRequest, context: Ctx
    ) -> pb.GetApproverResponse:
        approver = await self._app.get_approver(current_principal(), request.approver_id)
        return pb.GetApproverResponse(approver=convert.approver_pb(approver))

    async def ListApprovers(
        self, request: pb.ListApproversRequest, context: Ctx
    ) -> pb.ListApproversResponse:
        enabled = {
            identity_pb2.Approver.STATE_ENABLED: True,
            identity_pb2.Approver.STATE_DISABLED: False,
        }.get(request.state)
        page = await self._app.list_approvers(
            current_principal(), enabled, request.page_size, request.page_token
        )
        return pb.ListApproversResponse(
            approvers=[convert.approver_pb(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def DisableApprover(
        self, request: pb.DisableApproverRequest, context: Ctx
    ) -> pb.DisableApproverResponse:
        approver = await self._app.disable_approver(
            current_principal(), request.approver_id, request.request_id
        )
        return pb.DisableApproverResponse(approver=convert.approver_pb(approver))

    async def RegisterAccount(
        self, request: pb.RegisterAccountRequest, context: Ctx
    ) -> pb.RegisterAccountResponse:
        account = await self._app.register_account(
            current_principal(), request.account_id, request.name, request.request_id
        )
        return pb.RegisterAccountResponse(account=convert.account_pb(account))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Ctx
    ) -> pb.ListAccountsResponse:
        page = await self._app.list_accounts(
            current_principal(), request.page_size, request.page_token
        )
        return pb.ListAccountsResponse(
            accounts=[convert.account_pb(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def IssueCredential(
        self, request: pb.IssueCredentialRequest, context: Ctx
    ) -> pb.IssueCredentialResponse:
        which = request.WhichOneof("expiration")
        expire_time = None
        if which == "expire_time":
            expire_time = convert.from_ts(request.expire_time)
        elif which == "ttl":
            ttl = convert.from_dur(request.ttl, "ttl")
            if ttl is None:
                raise InvalidArgument.field("ttl", "must be positive")
            expire_time = utcnow() + ttl
        issued = await self._app.issue_credential(
            current_principal(),
            convert.principal_kind(request.principal.kind),
            request.principal.subject,
            request.description,
            expire_time,
            request.request_id,
        )
        return pb.IssueCredentialResponse(
            credential=convert.credential_pb(issued.credential, utcnow()), token=issued.token
        )

    async def RevokeCredential(
        self, request: pb.RevokeCredentialRequest, context: Ctx
    ) -> pb.RevokeCredentialResponse:
        credential = await self._app.revoke_credential(
            current_principal(), request.credential_id, request.request_id
        )
        return pb.RevokeCredentialResponse(credential=convert.credential_pb(credential, utcnow()))

    async def ListCredentials(
        self, request: pb.ListCredentialsRequest, context: Ctx
    ) -> pb.ListCredentialsResponse:
        kind = (
            convert.principal_kind(request.principal_kind, "principal_kind")
            if request.principal_kind
            else None
        )
        subject_filter = None
        if request.principal_subject:
            if kind is None:
                raise InvalidArgument.field(
                    "principal_kind", "required when principal_subject is given"
                )
            subject_filter = Principal(kind, request.principal_subject)
        page = await self._app.list_credentials(
            current_principal(),
            subject_filter,
            kind,
            _CREDENTIAL_STATES.get(request.state),
            request.page_size,
            request.page_token,
        )
        now = utcnow()
        return pb.ListCredentialsResponse(
            credentials=[convert.credential_pb(c, now) for c in page.items],
            next_page_token=page.next_page_token,
        )

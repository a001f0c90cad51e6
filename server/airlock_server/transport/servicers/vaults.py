"""VaultService: request to use case to response, nothing more."""

from __future__ import annotations

from airlock.v1 import vault_service_pb2 as pb
from airlock.v1 import vault_service_pb2_grpc
from airlock_server.app.vaults import VaultService
from airlock_server.transport import convert_recovery as cr
from airlock_server.transport.authentication import Ctx, current_principal


class VaultServicer(vault_service_pb2_grpc.VaultServiceServicer):
    def __init__(self, vaults: VaultService) -> None:
        self._app = vaults

    async def CreateVault(
        self, request: pb.CreateVaultRequest, context: Ctx
    ) -> pb.CreateVaultResponse:
        vault = await self._app.create_vault(
            current_principal(),
            request.account_id,
            request.name,
            request.min_retention_days,
            request.max_retention_days,
            dict(request.tags),
            request.request_id,
        )
        return pb.CreateVaultResponse(vault=cr.vault_pb(vault))

    async def GetVault(self, request: pb.GetVaultRequest, context: Ctx) -> pb.GetVaultResponse:
        vault = await self._app.get_vault(current_principal(), request.vault_arn)
        return pb.GetVaultResponse(vault=cr.vault_pb(vault))

    async def ListVaults(
        self, request: pb.ListVaultsRequest, context: Ctx
    ) -> pb.ListVaultsResponse:
        page = await self._app.list_vaults(
            current_principal(),
            request.account_id,
            request.team_id,
            request.page_size,
            request.page_token,
        )
        return pb.ListVaultsResponse(
            vaults=[cr.vault_pb(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def AssociateApprovalTeam(
        self, request: pb.AssociateApprovalTeamRequest, context: Ctx
    ) -> pb.AssociateApprovalTeamResponse:
        change = await self._app.associate(
            current_principal(),
            request.vault_arn,
            request.team_id,
            request.comment,
            request.request_id,
        )
        return pb.AssociateApprovalTeamResponse(
            vault=cr.vault_pb(change.vault),
            session=cr.session_pb(change.session) if change.session else None,
        )

    async def DisassociateApprovalTeam(
        self, request: pb.DisassociateApprovalTeamRequest, context: Ctx
    ) -> pb.DisassociateApprovalTeamResponse:
        change = await self._app.disassociate(
            current_principal(), request.vault_arn, request.comment, request.request_id
        )
        return pb.DisassociateApprovalTeamResponse(
            vault=cr.vault_pb(change.vault),
            session=cr.session_pb(change.session) if change.session else None,
        )

    async def RequestRestoreAccess(
        self, request: pb.RequestRestoreAccessRequest, context: Ctx
    ) -> pb.RequestRestoreAccessResponse:
        change = await self._app.request_restore_access(
            current_principal(),
            request.vault_arn,
            request.restore_vault_name,
            request.comment,
            request.request_id,
        )
        return pb.RequestRestoreAccessResponse(
            grant=cr.grant_pb(change.grant), session=cr.session_pb(change.session)
        )

    async def ListRestoreAccess(
        self, request: pb.ListRestoreAccessRequest, context: Ctx
    ) -> pb.ListRestoreAccessResponse:
        page = await self._app.list_restore_access(
            current_principal(),
            request.vault_arn,
            cr.GRANT_STATES_BACK.get(request.state),
            request.page_size,
            request.page_token,
        )
        return pb.ListRestoreAccessResponse(
            grants=[cr.grant_pb(g) for g in page.items], next_page_token=page.next_page_token
        )

    async def RevokeRestoreAccess(
        self, request: pb.RevokeRestoreAccessRequest, context: Ctx
    ) -> pb.RevokeRestoreAccessResponse:
        change = await self._app.revoke_restore_access(
            current_principal(), request.grant_id, request.comment, request.request_id
        )
        return pb.RevokeRestoreAccessResponse(
            grant=cr.grant_pb(change.grant), session=cr.session_pb(change.session)
        )

    async def CheckAccess(
        self, request: pb.CheckAccessRequest, context: Ctx
    ) -> pb.CheckAccessResponse:
        answer = await self._app.check_access(
            current_principal(), request.vault_arn, request.account_id
        )
        return pb.CheckAccessResponse(
            allowed=answer.allowed, grant=cr.grant_pb(answer.grant) if answer.grant else None
        )

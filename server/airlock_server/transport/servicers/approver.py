"""ApproverService: approver credentials only (checked by the use cases)."""

from __future__ import annotations

from airlock.v1 import approver_service_pb2 as pb
from airlock.v1 import approver_service_pb2_grpc
from airlock_server.app.teams import TeamService
from airlock_server.domain.errors import InvalidArgument, Unimplemented
from airlock_server.transport import convert
from airlock_server.transport.interceptors import Ctx, current_principal


class ApproverServicer(approver_service_pb2_grpc.ApproverServiceServicer):
    def __init__(self, teams: TeamService) -> None:
        self._teams = teams

    async def ListInvitations(
        self, request: pb.ListInvitationsRequest, context: Ctx
    ) -> pb.ListInvitationsResponse:
        page = await self._teams.list_invitations(
            current_principal(),
            convert.INVITATION_STATES_BACK.get(request.state),
            request.team_id,
            request.page_size,
            request.page_token,
        )
        return pb.ListInvitationsResponse(
            invitations=[convert.invitation_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def RespondToInvitation(
        self, request: pb.RespondToInvitationRequest, context: Ctx
    ) -> pb.RespondToInvitationResponse:
        if request.decision == pb.INVITATION_DECISION_UNSPECIFIED:
            raise InvalidArgument.field("decision", "must be ACCEPT or DECLINE")
        view = await self._teams.respond_to_invitation(
            current_principal(),
            request.invitation_id,
            request.decision == pb.INVITATION_DECISION_ACCEPT,
            request.public_key,
            request.key_proof,
            request.request_id,
        )
        return pb.RespondToInvitationResponse(
            invitation=convert.invitation_pb(view),
            team_state=convert.team_state_pb(view.team.state),
            team_status_code=convert.team_status_pb(view.team.status),
        )

    async def ListAssignedSessions(
        self, request: pb.ListAssignedSessionsRequest, context: Ctx
    ) -> pb.ListAssignedSessionsResponse:
        raise Unimplemented("ListAssignedSessions arrives with the recovery flow")

    async def Vote(self, request: pb.VoteRequest, context: Ctx) -> pb.VoteResponse:
        raise Unimplemented("Vote arrives with the recovery flow")

"""ApproverService: approver credentials only (checked by the use cases)."""

from __future__ import annotations

from airlock.v1 import approver_service_pb2 as pb
from airlock.v1 import approver_service_pb2_grpc
from airlock_server.app.sessions import SessionService
from airlock_server.app.teams import TeamService
from airlock_server.domain.errors import InvalidArgument
from airlock_server.transport import convert
from airlock_server.transport import convert_recovery as cr
from airlock_server.transport.authentication import Ctx, current_principal


class ApproverServicer(approver_service_pb2_grpc.ApproverServiceServicer):
    def __init__(self, teams: TeamService, sessions: SessionService) -> None:
        self._teams = teams
        self._sessions = sessions

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
        page = await self._sessions.list_assigned(
            current_principal(),
            cr.SESSION_STATES_BACK.get(request.state),
            request.awaiting_vote,
            request.page_size,
            request.page_token,
        )
        return pb.ListAssignedSessionsResponse(
            sessions=[cr.session_pb(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def Vote(self, request: pb.VoteRequest, context: Ctx) -> pb.VoteResponse:
        view = await self._sessions.vote(
            current_principal(),
            request.session_id,
            cr.decision(request.decision),
            request.comment,
            request.signature,
            request.request_id,
        )
        return pb.VoteResponse(session=cr.session_pb(view))

"""TeamService: request to use case to response, nothing more."""

from __future__ import annotations

from airlock.v1 import team_pb2, team_service_pb2_grpc
from airlock.v1 import team_service_pb2 as pb
from airlock_server.app.passkeys import InvitationLinks
from airlock_server.app.teams import TeamService, TeamUpdate
from airlock_server.domain.errors import InvalidArgument, Unimplemented
from airlock_server.domain.team_changes import NewKey
from airlock_server.domain.teams import Team, validate_team_spec
from airlock_server.transport import convert
from airlock_server.transport import convert_recovery as cr
from airlock_server.transport.authentication import Ctx, current_principal
from airlock_server.transport.convert_health import team_health_pb


class TeamServicer(team_service_pb2_grpc.TeamServiceServicer):
    def __init__(self, teams: TeamService, links: InvitationLinks | None = None) -> None:
        self._app = teams
        self._links = links

    async def _teams_pb(self, teams: list[Team]) -> list[team_pb2.ApprovalTeam]:
        team_ids = [t.team_id for t in teams]
        deletions = await self._app.deletions_of(team_ids)
        activity = await self._app.activity_of(team_ids)
        return [
            convert.team_pb(t, deletions.get(t.team_id), activity.get(t.team_id)) for t in teams
        ]

    async def CreateApprovalTeam(
        self, request: pb.CreateApprovalTeamRequest, context: Ctx
    ) -> pb.CreateApprovalTeamResponse:
        spec = validate_team_spec(
            name=request.name,
            description=request.description,
            approver_ids=list(request.approver_ids),
            min_approvals=request.min_approvals,
            session_ttl=convert.from_dur(request.session_ttl, "session_ttl"),
            invitation_ttl=convert.from_dur(request.invitation_ttl, "invitation_ttl"),
        )
        team = await self._app.create_team(current_principal(), spec, request.request_id)
        return pb.CreateApprovalTeamResponse(team=convert.team_pb(team))

    async def GetApprovalTeam(
        self, request: pb.GetApprovalTeamRequest, context: Ctx
    ) -> pb.GetApprovalTeamResponse:
        view = await self._app.get_team_view(current_principal(), request.team_id)
        return pb.GetApprovalTeamResponse(
            team=convert.team_pb(view.team, view.deletion, view.activity)
        )

    async def ListApprovalTeams(
        self, request: pb.ListApprovalTeamsRequest, context: Ctx
    ) -> pb.ListApprovalTeamsResponse:
        page = await self._app.list_teams(
            current_principal(),
            convert.TEAM_STATES_BACK.get(request.state),
            request.page_size,
            request.page_token,
        )
        return pb.ListApprovalTeamsResponse(
            teams=await self._teams_pb(list(page.items)), next_page_token=page.next_page_token
        )

    async def IssueInvitationLink(
        self, request: pb.IssueInvitationLinkRequest, context: Ctx
    ) -> pb.IssueInvitationLinkResponse:
        if self._links is None:
            raise Unimplemented("this server issues no invitation links")
        issued = await self._links.issue(
            current_principal(), request.invitation_id, request.request_id
        )
        return pb.IssueInvitationLinkResponse(
            url=issued.url, token=issued.token, expire_time=convert.ts(issued.expire_time)
        )

    async def DeleteInactiveTeam(
        self, request: pb.DeleteInactiveTeamRequest, context: Ctx
    ) -> pb.DeleteInactiveTeamResponse:
        team = await self._app.delete_inactive_team(
            current_principal(), request.team_id, request.request_id
        )
        return pb.DeleteInactiveTeamResponse(team=convert.team_pb(team))

    async def ShareTeam(self, request: pb.ShareTeamRequest, context: Ctx) -> pb.ShareTeamResponse:
        share = await self._app.share(
            current_principal(),
            request.team_id,
            convert.principal_kind(request.principal.kind),
            request.principal.subject,
            request.request_id,
        )
        return pb.ShareTeamResponse(share=convert.share_pb(share))

    async def UnshareTeam(
        self, request: pb.UnshareTeamRequest, context: Ctx
    ) -> pb.UnshareTeamResponse:
        share = await self._app.unshare(
            current_principal(),
            request.team_id,
            convert.principal_kind(request.principal.kind),
            request.principal.subject,
            request.request_id,
        )
        return pb.UnshareTeamResponse(share=convert.share_pb(share))

    async def ListTeamShares(
        self, request: pb.ListTeamSharesRequest, context: Ctx
    ) -> pb.ListTeamSharesResponse:
        page = await self._app.list_shares(
            current_principal(), request.team_id, request.page_size, request.page_token
        )
        return pb.ListTeamSharesResponse(
            shares=[convert.share_pb(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def UpdateApprovalTeam(
        self, request: pb.UpdateApprovalTeamRequest, context: Ctx
    ) -> pb.UpdateApprovalTeamResponse:
        team, session = await self._app.update_team(
            current_principal(),
            request.team_id,
            request.etag,
            _team_update(request),
            request.request_id,
        )
        return pb.UpdateApprovalTeamResponse(
            team=(await self._teams_pb([team]))[0], session=cr.session_pb(session)
        )

    async def StartTeamDeletion(
        self, request: pb.StartTeamDeletionRequest, context: Ctx
    ) -> pb.StartTeamDeletionResponse:
        team, session = await self._app.start_team_deletion(
            current_principal(),
            request.team_id,
            request.etag,
            request.pending_window_days,
            request.request_id,
        )
        return pb.StartTeamDeletionResponse(
            team=(await self._teams_pb([team]))[0], session=cr.session_pb(session)
        )

    async def GetTeamHealth(
        self, request: pb.GetTeamHealthRequest, context: Ctx
    ) -> pb.GetTeamHealthResponse:
        health = await self._app.get_team_health(
            current_principal(),
            request.team_id,
            convert.from_dur(request.activity_window, "activity_window"),
        )
        return pb.GetTeamHealthResponse(health=team_health_pb(health))

    async def StartTeamBaseline(
        self, request: pb.StartTeamBaselineRequest, context: Ctx
    ) -> pb.StartTeamBaselineResponse:
        session = await self._app.start_team_baseline(
            current_principal(),
            request.team_id,
            tuple(request.approver_ids),
            request.comment,
            request.request_id,
        )
        return pb.StartTeamBaselineResponse(session=cr.session_pb(session))


UPDATE_FIELDS = (
    "description",
    "approver_ids",
    "min_approvals",
    "session_ttl",
    "invitation_ttl",
    "reenroll_approver_ids",
    "new_keys",
)


def _team_update(request: pb.UpdateApprovalTeamRequest) -> TeamUpdate:
    """The fields named by update_mask; without a mask, the fields with non-default values."""
    if request.HasField("update_mask"):
        paths = set(request.update_mask.paths)
        unknown = sorted(paths - set(UPDATE_FIELDS))
        if unknown:
            raise InvalidArgument.field("update_mask", f"unknown fields: {', '.join(unknown)}")
    else:
        paths = {
            "description" if request.description else "",
            "approver_ids" if request.approver_ids else "",
            "min_approvals" if request.min_approvals else "",
            "session_ttl" if request.HasField("session_ttl") else "",
            "invitation_ttl" if request.HasField("invitation_ttl") else "",
            "reenroll_approver_ids" if request.reenroll_approver_ids else "",
            "new_keys" if request.new_keys else "",
        } - {""}
    return TeamUpdate(
        description=request.description if "description" in paths else None,
        approver_ids=tuple(request.approver_ids) if "approver_ids" in paths else None,
        min_approvals=request.min_approvals if "min_approvals" in paths else None,
        session_ttl=(
            convert.from_dur(request.session_ttl, "session_ttl") if "session_ttl" in paths else None
        ),
        invitation_ttl=(
            convert.from_dur(request.invitation_ttl, "invitation_ttl")
            if "invitation_ttl" in paths
            else None
        ),
        reenroll_approver_ids=(
            tuple(request.reenroll_approver_ids) if "reenroll_approver_ids" in paths else ()
        ),
        new_keys=(
            tuple(
                NewKey(k.approver_id, k.public_key, k.current_key_signature)
                for k in request.new_keys
            )
            if "new_keys" in paths
            else ()
        ),
    )

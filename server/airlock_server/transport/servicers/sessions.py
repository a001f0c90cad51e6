"""SessionService: request to use case to response, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator

from airlock.v1 import session_service_pb2 as pb
from airlock.v1 import session_service_pb2_grpc
from airlock_server.app.ports import SessionQuery
from airlock_server.app.sessions import SessionService
from airlock_server.domain.proofs import PROOF_FORMAT
from airlock_server.transport import convert
from airlock_server.transport import convert_recovery as cr
from airlock_server.transport.authentication import Ctx, current_principal


class SessionServicer(session_service_pb2_grpc.SessionServiceServicer):
    def __init__(self, sessions: SessionService) -> None:
        self._app = sessions

    async def StartSession(
        self, request: pb.StartSessionRequest, context: Ctx
    ) -> pb.StartSessionResponse:
        view = await self._app.start_session(
            current_principal(),
            request.team_id,
            request.action,
            request.protected_resource,
            dict(request.metadata),
            request.comment,
            request.request_id,
        )
        return pb.StartSessionResponse(session=cr.session_pb(view))

    async def GetSession(
        self, request: pb.GetSessionRequest, context: Ctx
    ) -> pb.GetSessionResponse:
        view = await self._app.get_session(current_principal(), request.session_id)
        return pb.GetSessionResponse(session=cr.session_pb(view))

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Ctx
    ) -> pb.ListSessionsResponse:
        query = SessionQuery(
            team_id=request.team_id,
            state=cr.SESSION_STATES_BACK.get(request.state),
            kind=cr.KINDS_BACK.get(request.kind),
            action=request.action,
            protected_resource=request.protected_resource,
            requester_account_id=request.requester_account_id,
            create_time_start=convert.from_ts(request.create_time_start)
            if request.HasField("create_time_start")
            else None,
            create_time_end=convert.from_ts(request.create_time_end)
            if request.HasField("create_time_end")
            else None,
        )
        page = await self._app.list_sessions(
            current_principal(), query, request.page_size, request.page_token
        )
        return pb.ListSessionsResponse(
            sessions=[cr.session_pb(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def CancelSession(
        self, request: pb.CancelSessionRequest, context: Ctx
    ) -> pb.CancelSessionResponse:
        view = await self._app.cancel_session(
            current_principal(), request.session_id, request.request_id
        )
        return pb.CancelSessionResponse(session=cr.session_pb(view))

    async def CompleteSession(
        self, request: pb.CompleteSessionRequest, context: Ctx
    ) -> pb.CompleteSessionResponse:
        view = await self._app.complete_session(
            current_principal(),
            request.session_id,
            cr.execution_status(request.execution_status),
            request.message,
            request.request_id,
        )
        return pb.CompleteSessionResponse(session=cr.session_pb(view))

    async def WatchSession(
        self, request: pb.WatchSessionRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchSessionResponse]:
        async for view in self._app.watch(current_principal(), request.session_id):
            yield pb.WatchSessionResponse(session=cr.session_pb(view))

    async def ExportApprovalProof(
        self, request: pb.ExportApprovalProofRequest, context: Ctx
    ) -> pb.ExportApprovalProofResponse:
        proof = await self._app.export_approval_proof(current_principal(), request.session_id)
        return pb.ExportApprovalProofResponse(proof=proof, format=PROOF_FORMAT)

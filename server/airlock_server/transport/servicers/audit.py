"""AuditService: request to use case to response, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator

from airlock.v1 import audit_service_pb2 as pb
from airlock.v1 import audit_service_pb2_grpc
from airlock_server.app.audit import AuditService
from airlock_server.transport import convert_audit as ca
from airlock_server.transport.authentication import Ctx, current_principal


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditService) -> None:
        self._app = audit

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Ctx
    ) -> pb.ListEventsResponse:
        page = await self._app.list_events(
            current_principal(),
            ca.event_query(request),
            request.after_seq,
            request.page_size,
            request.page_token,
        )
        return pb.ListEventsResponse(
            events=[ca.event_pb(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async for event in self._app.watch_events(current_principal(), request.after_seq):
            yield pb.WatchEventsResponse(event=ca.event_pb(event))

    async def VerifyLog(self, request: pb.VerifyLogRequest, context: Ctx) -> pb.VerifyLogResponse:
        checkpoint = (
            ca.checkpoint_of(request.checkpoint) if request.HasField("checkpoint") else None
        )
        verification = await self._app.verify_log(
            current_principal(), request.from_seq, request.to_seq, checkpoint
        )
        return ca.verification_pb(verification)

    async def GetLogCheckpoint(
        self, request: pb.GetLogCheckpointRequest, context: Ctx
    ) -> pb.GetLogCheckpointResponse:
        checkpoint = await self._app.checkpoint(current_principal())
        return pb.GetLogCheckpointResponse(checkpoint=ca.checkpoint_pb(checkpoint))

"""NotificationService: request to use case to response, nothing more."""

from __future__ import annotations

from airlock.v1 import notification_service_pb2 as pb
from airlock.v1 import notification_service_pb2_grpc
from airlock_server.app.notifications import NotificationService
from airlock_server.transport import convert_notifications as convert
from airlock_server.transport.authentication import Ctx, current_principal


class NotificationServicer(notification_service_pb2_grpc.NotificationServiceServicer):
    def __init__(self, notifications: NotificationService) -> None:
        self._app = notifications

    async def CreateEndpoint(
        self, request: pb.CreateEndpointRequest, context: Ctx
    ) -> pb.CreateEndpointResponse:
        e = request.endpoint
        endpoint, secret = await self._app.create_endpoint(
            current_principal(),
            e.url,
            e.description,
            convert.body_format(e.body_format, "endpoint.body_format"),
            tuple(e.event_kinds),
            e.enabled,
            request.request_id,
        )
        return pb.CreateEndpointResponse(endpoint=convert.endpoint_pb(endpoint), secret=secret)

    async def ListEndpoints(
        self, request: pb.ListEndpointsRequest, context: Ctx
    ) -> pb.ListEndpointsResponse:
        page = await self._app.list_endpoints(
            current_principal(), request.page_size, request.page_token
        )
        return pb.ListEndpointsResponse(
            endpoints=[convert.endpoint_pb(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateEndpoint(
        self, request: pb.UpdateEndpointRequest, context: Ctx
    ) -> pb.UpdateEndpointResponse:
        change = convert.endpoint_change(request.endpoint, list(request.update_mask.paths))
        endpoint = await self._app.update_endpoint(
            current_principal(), request.endpoint.endpoint_id, change, request.endpoint.etag
        )
        return pb.UpdateEndpointResponse(endpoint=convert.endpoint_pb(endpoint))

    async def DeleteEndpoint(
        self, request: pb.DeleteEndpointRequest, context: Ctx
    ) -> pb.DeleteEndpointResponse:
        await self._app.delete_endpoint(current_principal(), request.endpoint_id, request.etag)
        return pb.DeleteEndpointResponse()

    async def SendTestNotification(
        self, request: pb.SendTestNotificationRequest, context: Ctx
    ) -> pb.SendTestNotificationResponse:
        notification_id = await self._app.send_test(
            current_principal(), request.endpoint_id, request.request_id
        )
        return pb.SendTestNotificationResponse(notification_id=notification_id)

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Ctx
    ) -> pb.ListDeliveriesResponse:
        page = await self._app.list_deliveries(
            current_principal(),
            request.target,
            convert.delivery_state(request.state),
            request.page_size,
            request.page_token,
        )
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery_pb(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

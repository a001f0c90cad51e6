"""What every call leaves for an operator: its metrics and span, and one `rpc.completed` line."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import grpc
import structlog

from airlock_server.app.identity import Caller
from airlock_server.transport.authentication import Ctx
from airlock_server.transport.metrics import Call, Telemetry, peer_of

log = structlog.get_logger("airlock.rpc")


class CallLog:
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def start(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> Call:
        return self._telemetry.start(method, metadata)

    def completed(
        self,
        method: str,
        call: Call,
        code: grpc.StatusCode,
        reason: str,
        request: Any,
        context: Ctx,
        caller: Caller | None,
    ) -> None:
        """The call's metrics and its one `rpc.completed` line (never a token or a body)."""
        self._telemetry.finish(call, code)
        request_id = getattr(request, "request_id", "")
        log.info(
            "rpc.completed",
            method=method,
            principal=str(caller.principal) if caller else "",
            code=code.name,
            reason=reason,
            duration_ms=round((time.perf_counter() - call.started) * 1000, 2),
            trace_id=call.trace_id,
            peer=peer_of(context),
            **({"request_id": request_id} if isinstance(request_id, str) and request_id else {}),
        )

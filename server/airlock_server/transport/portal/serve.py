"""The portal served by uvicorn inside the gRPC server's event loop (one process, one loop)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette


class _Embedded(uvicorn.Server):
    """uvicorn without its own signal handlers: `serve` owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class PortalTls:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None


@dataclass
class ServedPortal:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def serve_portal(app: Starlette, listen: str, tls: PortalTls | None) -> ServedPortal:
    """Bind `listen` (host:port, port 0 for any) now, so an error stops startup, then serve."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError):
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
        ssl_ca_certs=tls.client_ca_file if tls else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca_file else ssl.CERT_NONE,
        timeout_graceful_shutdown=2,
    )
    server = _Embedded(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="airlock-portal")
    return ServedPortal(server, task, sock.getsockname()[1])

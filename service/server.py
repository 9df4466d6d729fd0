"""Running the app under uvicorn: its configuration, and one server process."""

from __future__ import annotations

import signal
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette

from service.app import create_app
from service.core.election import Election
from service.settings import Settings
from service.transport.direct import protocol_for
from service.transport.sse_direct import http_protocol_for


def uvicorn_config(settings: Settings, app: Starlette) -> uvicorn.Config:
    # Uncompressed /ws is served below ASGI (service.transport.direct); with compression on, every
    # message is deflated per connection anyway, so uvicorn's protocol and Starlette serve it.
    ws: Any = "websockets-sansio" if settings.compression else protocol_for(app)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # /sse is served below ASGI too (service.transport.sse_direct), on uvicorn's h11.
        http=http_protocol_for(app),
        ws=ws,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        ws_per_message_deflate=settings.compression,
        timeout_graceful_shutdown=2,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
    )


def ignore_stop_signals() -> None:
    """uvicorn re-raises the signal that stopped it once it has shut down; with these
    handlers in place that re-raise returns to us, so what we started is stopped too."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda number, frame: None)


def serve(settings: Settings, election: Election, sock: socket.socket | None = None) -> None:
    server = uvicorn.Server(uvicorn_config(settings, create_app(settings, election)))
    server.run(sockets=None if sock is None else [sock])

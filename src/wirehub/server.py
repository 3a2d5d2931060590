"""Run a hub on uvicorn with wirehub's shutdown order.

uvicorn alone closes WebSockets with 1012 and re-raises SIGTERM after its own
shutdown (so the process dies of the signal). ``HubServer`` first stops
accepting, then lets the hub close its clients with 1001 after draining their
queues, then lets uvicorn finish; ``run`` returns normally so the CLI exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from types import FrameType

import uvicorn

from wirehub.errors import WirehubError
from wirehub.hub import Hub, StartInterrupted
from wirehub.settings import Settings
from wirehub.web.app import create_app
from wirehub.web.rawsend import RawSendProtocol

__all__ = ["HubServer", "build_server", "ws_protocol"]

logger = logging.getLogger("wirehub.server")


class HubServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub
        #: A shutdown signal arrived before the start finished.
        self.interrupted = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # 0. Start the hub (services, jobs, bridges) before uvicorn's lifespan:
        #    a failure is then one clear log line and exit code 1, not a
        #    traceback; the app's lifespan finds the hub already running.
        try:
            await self.hub.start()
        except StartInterrupted as exc:
            logger.info("%s", exc)
            self.should_exit = True
            return
        except WirehubError as exc:
            logger.error("start failed: %s", exc)
            self.should_exit = True
            return
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:

        # 1. Stop accepting new connections.
        for server in self.servers:
            server.close()
        # 2. Close our clients with 1001 after draining their queues.
        await self.hub.stop()
        # 3. A WebSocket still open now did not take its close frame in time
        #    (a peer that stopped reading): drop it instead of waiting for it.
        aborted = 0
        for connection in list(self.server_state.connections):
            if any("protocols.websockets" in c.__module__ for c in type(connection).__mro__):
                transport = getattr(connection, "transport", None)
                if transport is not None and not transport.is_closing():
                    transport.abort()
                    aborted += 1
        if aborted:
            logger.info("dropped %d WebSocket connections that did not close in time", aborted)

        # 4. uvicorn's own shutdown: remaining HTTP connections, lifespan.
        forced = self.force_exit
        await super().shutdown(sockets)
        if forced and self.started:
            # A second signal skips uvicorn's lifespan shutdown; the hub is
            # already stopped, so end the lifespan task cleanly anyway rather
            # than leave it to be cancelled with a traceback.
            await self.lifespan.shutdown()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if not self.started:
            # uvicorn only sets should_exit; a required service that is still
            # starting would hold the start until its ready_timeout.
            self.interrupted = True
            loop = self.hub._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.hub.interrupt_start)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # A handled SIGTERM/SIGINT is a clean exit: do not re-raise it.
            self._captured_signals.clear()


def build_server(
    settings: Settings, *, host: str | None = None, port: int | None = None
) -> HubServer:
    hub = Hub(settings)
    app = create_app(hub)
    srv = settings.server
    config = uvicorn.Config(
        app,
        host=host or srv.host,
        port=srv.port if port is None else port,
        loop="uvloop",
        http="httptools",
        ws=ws_protocol(srv.ws),
        ws_max_size=srv.ws_max_size,
        ws_per_message_deflate=srv.ws_per_message_deflate,
        timeout_graceful_shutdown=srv.graceful_timeout,
        log_config=None,
        log_level=srv.log_level,
        access_log=False,
    )
    return HubServer(config, hub)


def ws_protocol(name: str) -> str | type[asyncio.Protocol]:
    """The uvicorn ``ws`` option for ``server.ws``: "wirehub" is our protocol class."""
    return RawSendProtocol if name == "wirehub" else name

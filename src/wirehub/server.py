"""Run a hub on uvicorn with wirehub's shutdown order.

uvicorn alone starts the app before it binds its port, closes WebSockets with
1012 and re-raises SIGTERM after its own shutdown (so the process dies of the
signal). ``HubServer`` binds the port first (a busy port fails before any
service starts), serves while the hub starts (``/readyz`` and the handshake
answer 503 until it is up), and on shutdown keeps listening while the hub
refuses new clients and closes its own with 1001 after draining their queues;
then it stops listening and lets uvicorn finish. ``run`` returns normally so
the CLI exits 0 (1 when ``failed``).

Only uvicorn's public API is used here (``uvicorn.Config``, ``uvicorn.Server``
and its ``started`` / ``should_exit`` / ``force_exit`` flags), plus the
lifecycle methods it overrides; whatever else it needs of uvicorn's inner state
is a function of ``web/uvicorn_protocols/server_hooks.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from types import FrameType

import uvicorn

from wirehub.core.gcwatch import freeze_after_start
from wirehub.embedded import embedding_for
from wirehub.errors import WirehubError
from wirehub.hub import Hub, StartInterrupted
from wirehub.settings import Settings
from wirehub.web.app import create_app, served_app
from wirehub.web.uvicorn_protocols import http_protocol_class, server_hooks, ws_protocol_class
from wirehub.web.wirelimits import WireCounters, WireLimits

__all__ = ["HubServer", "build_server", "http_protocol", "wire_limits", "ws_protocol"]

logger = logging.getLogger("wirehub.server")


class HubServer(uvicorn.Server):
    """uvicorn with the hub's lifecycle around it: listen, start, serve, drain, stop.

    ``started`` becomes true once the hub is up and serving (what ``wirehub
    serve``'s "Uvicorn running on" line says); ``failed`` says the start failed.
    """

    def __init__(self, config: uvicorn.Config, hub: Hub, *, gc_freeze: bool = False) -> None:
        super().__init__(config)
        self.hub = hub
        # The hub's lifespan leaves the server alone: this class does it all.
        embedding_for(hub).served = True
        #: A shutdown signal arrived before the start finished.
        self.interrupted = False
        #: The start failed (the port is taken, a service or bridge did not start).
        self.failed = False
        self._listeners: list[socket.socket] = []
        #: Freeze what is alive once the hub is up: ``server.gc_freeze``, passed by
        #: build_server (``wirehub serve``, where the hub owns the process).
        self.gc_freeze = gc_freeze

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # 0. Take the HTTP port before anything starts: a busy port is one log
        #    line and exit code 1, with no service started for nothing.
        if sockets is None and self.config.uds is None and self.config.fd is None:
            try:
                sockets = [self._bind()]
            except OSError as exc:
                logger.error(
                    "start failed: HTTP cannot listen on %s: %s",
                    _address(self.config.host, self.config.port),
                    exc.strerror or exc,
                )
                self.failed = True
                self.should_exit = True
                return
        self._listeners = list(sockets or [])
        # 1. Serve while the hub starts: /healthz answers; /readyz and the /ws
        #    handshake answer 503 until it is up (hub.accepting). The app's
        #    lifespan finds the hub's start under way and returns at once.
        starting = asyncio.ensure_future(self.hub.start())
        await asyncio.sleep(0)  # hub.start() marks itself running before it first waits
        try:
            await super().startup(sockets)
        except BaseException:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            raise
        self.started = False  # uvicorn's "listening"; ours is "the hub is up"
        if self._listeners:
            logger.info(
                "listening on %s while the hub starts (/readyz answers 503 until it is ready)",
                self._url(),
            )
        # 2. Services, jobs, bridges: a failure is one clear line, exit code 1.
        try:
            await starting
        except StartInterrupted as exc:
            logger.info("%s", exc)
            await self._abandon()
            return
        except WirehubError as exc:
            logger.error("start failed: %s", exc)
            self.failed = True
            await self._abandon()
            return
        if self.gc_freeze:
            frozen = freeze_after_start()
            logger.debug("%d objects alive at start kept out of garbage collection", frozen)
        self.started = True
        if self._listeners:
            server_hooks.log_started(self, self._listeners)

    async def _abandon(self) -> None:
        """The start did not finish: close what listens and what connected meanwhile."""
        self.should_exit = True
        await self.shutdown()

    def _bind(self) -> socket.socket:
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        # Not inheritable (the default): supervised services must never hold our port.
        return sock

    def _url(self) -> str:
        name = self._listeners[0].getsockname()
        return f"http://{_address(name[0], name[1])}"

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # 1. Stop accepting while still listening: the hub refuses new clients
        #    (the /ws handshake gets 503) and /readyz answers 503, so a load
        #    balancer sees the drain instead of a refused connection.
        # 2. Close our clients with 1001 after draining their queues, then stop
        #    bridges, jobs and services in reverse order.
        await self.hub.stop()
        # 3. Now stop listening.
        server_hooks.stop_listening(self)
        # 4. Give each WebSocket its close handshake (limits.close_timeout); one
        #    still open after that did not take its close frame (a peer that
        #    stopped reading): drop it instead of waiting for it.
        aborted = await self._drop_unclosed(self.hub.settings.limits.close_timeout)
        if aborted:
            logger.info("dropped %d WebSocket connections that did not close in time", aborted)

        # 5. uvicorn's own shutdown: remaining HTTP connections, lifespan.
        forced = self.force_exit
        await super().shutdown(sockets)
        if forced and self.started:
            # A second signal skips uvicorn's lifespan shutdown; the hub is
            # already stopped, so end the lifespan task cleanly anyway rather
            # than leave it to be cancelled with a traceback.
            await server_hooks.finish_lifespan(self)

    async def _drop_unclosed(self, timeout: float) -> int:
        """Wait up to ``timeout`` for WebSockets to close; abort (and count) the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A connection is gone when its socket is, not when it is "closing":
        # a peer that does not read keeps it flushing.
        while True:
            open_ = server_hooks.websocket_transports(self)
            if not open_ or self.force_exit or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        for transport in open_:
            transport.abort()
        return len(open_)

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
            server_hooks.forget_captured_signals(self)


def build_server(
    settings: Settings, *, host: str | None = None, port: int | None = None
) -> HubServer:
    hub = Hub(settings)
    app = create_app(hub)
    srv = settings.server
    config = uvicorn.Config(
        served_app(app),
        host=host or srv.host,
        port=srv.port if port is None else port,
        loop="uvloop",
        http=http_protocol(settings, hub.node),
        ws=ws_protocol(settings, hub.node),
        ws_max_size=srv.ws_max_size,
        # The hub's heartbeat pings at the application level (core/heartbeat.py,
        # one timing wheel for all): no keepalive timers per connection in uvicorn.
        ws_ping_interval=None,
        ws_per_message_deflate=srv.ws_per_message_deflate,
        # uvicorn annotates it int, but a float works: it goes to asyncio.wait_for.
        timeout_graceful_shutdown=srv.graceful_timeout,  # type: ignore[arg-type]
        log_config=None,
        log_level=srv.log_level,
        access_log=False,
    )
    return HubServer(config, hub, gc_freeze=srv.gc_freeze)


def wire_limits(settings: Settings) -> WireLimits:
    """The wire layer's bounds: ``[server]`` for the request head, ``[limits]`` for the rest."""
    srv, limits = settings.server, settings.limits
    return WireLimits(
        max_request_line=srv.max_request_line,
        max_header_bytes=srv.max_header_bytes,
        max_headers=srv.max_headers,
        handshake_timeout=srv.handshake_timeout,
        handshake_idle_timeout=srv.handshake_idle_timeout,
        queue_max_bytes=limits.queue_max_bytes,
        queue_max_lag=limits.queue_max_lag,
        rate=limits.rate,
        burst=limits.burst,
        abuse_limit=limits.abuse_limit,
        abuse_window=limits.abuse_window,
        close_timeout=limits.close_timeout,
    )


def http_protocol(
    settings: Settings, counters: WireCounters | None = None
) -> type[asyncio.Protocol]:
    """The uvicorn ``http`` option: httptools with a bounded, timed request head.

    ``counters`` (the hub's node) receives the refusals, so ``/metrics`` shows them.
    """
    return http_protocol_class(wire_limits(settings), counters)


def ws_protocol(
    settings: Settings, counters: WireCounters | None = None
) -> str | type[asyncio.Protocol]:
    """The uvicorn ``ws`` option for ``server.ws``, configured with the hub's bounds."""
    return ws_protocol_class(settings.server.ws, wire_limits(settings), counters)


def _address(host: str | None, port: int) -> str:
    host = host or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

"""The composition root: ``Hub(settings)`` builds the parts and runs their lifecycle.

Library use, for an existing FastAPI app::

    hub = Hub(settings)
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router)

Everything starts in :meth:`start` (before the app takes requests) and stops in
:meth:`stop`, in reverse order, each step with a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from wirehub import logredact
from wirehub.auth import Authorizer
from wirehub.auth_session import TokenLifecycle
from wirehub.bridges import BridgeConfig, BridgeSet, TcpBridge
from wirehub.core.connection import Connection
from wirehub.core.gcwatch import GcWatch
from wirehub.core.heartbeat import Heartbeat
from wirehub.core.housekeeping import COLLECT_SLICE, housekeeping_loop
from wirehub.core.housekeeping import collect_rooms as _collect_rooms
from wirehub.core.interfaces import Broker
from wirehub.core.looplag import LoopLagMonitor
from wirehub.core.node import Node
from wirehub.core.protocol import CloseCode
from wirehub.core.rooms import RoomPolicy
from wirehub.errors import NotFound, StartInterrupted, WirehubError
from wirehub.hub_parts import build_broker, build_jobs
from wirehub.hubstats import STATS_ROOM, publish_stats, snapshot
from wirehub.jobs.api import JobRunner
from wirehub.metrics import HubMetrics
from wirehub.services import Services, ServiceSpec
from wirehub.settings import Settings
from wirehub.typed import Schemas, TypedRoom, import_model, typed_handler
from wirehub.uploads.stores import SpoolStore

if TYPE_CHECKING:
    from fastapi import APIRouter
    from pydantic import BaseModel

__all__ = ["CLIENTS_ROOM", "SERVER_ID", "STATS_ROOM", "Component", "Hub", "StartInterrupted"]

logger = logging.getLogger("wirehub.hub")

T = TypeVar("T")
H = TypeVar("H", bound=Callable[..., Any])

#: System room with ``connect`` / ``disconnect`` events of every client.
CLIENTS_ROOM = "$hub.clients"
#: Sender id of messages published by the server itself (HTTP API, hub.publish).
SERVER_ID = "$hub"


class Component(Protocol):
    """A part with a lifecycle (services, job runner, TCP bridges…).

    Components start in registration order before the app takes requests and
    stop in reverse order after it; a failing ``start`` stops the ones already
    started and fails the hub's start with the component's error.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> dict[str, bool]:
        """Named checks for ``/readyz`` (all must be true)."""
        ...


def _policies(settings: Settings) -> list[RoomPolicy]:
    default_size, default_ttl = settings.history.size, settings.history.ttl
    policies = [
        RoomPolicy(
            pattern=r.pattern,
            presence_events=r.presence_events,
            presence_limit=r.presence_limit,
            history_size=default_size if r.history_size is None else r.history_size,
            history_ttl=default_ttl if r.history_ttl is None else r.history_ttl,
            max_members=r.max_members,
        )
        for r in settings.rooms
    ]
    policies.append(
        RoomPolicy(pattern="$*", presence_events=False, history_size=100, history_ttl=600)
    )
    policies.append(RoomPolicy(pattern="*", history_size=default_size, history_ttl=default_ttl))
    return policies


class Hub:
    """One hub node: connections, rooms, and the background tasks that keep them.

    Build one per process from :class:`~wirehub.settings.Settings` and give its
    :attr:`lifespan` and :attr:`router` to a FastAPI app (``create_app`` does both);
    then publish, send and broadcast from routes, ``@hub.on`` handlers, jobs or other
    threads. Its parts are attributes: ``hub.jobs``, ``hub.services``, ``hub.bridges``
    and ``hub.uploads``; ``hub.settings`` is what it was built from. Building it opens
    nothing: ports, processes and Redis wait for :meth:`start`.

    ``broker`` (a :class:`~wirehub.core.interfaces.Broker`), ``runner`` (a
    :class:`~wirehub.jobs.api.JobRunner`) and ``store`` (the upload
    :class:`~wirehub.uploads.stores.SpoolStore`) replace the ones the settings name,
    for tests and for parts of your own (docs/architecture.md).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        broker: Broker | None = None,
        runner: JobRunner | None = None,
        store: SpoolStore | None = None,
    ) -> None:
        self.settings = settings or Settings()
        limits = self.settings.limits
        self.node_id = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.node = Node(
            policies=_policies(self.settings),
            max_frame=limits.max_frame,
            max_rooms_per_connection=limits.max_rooms_per_connection,
            max_rooms=limits.max_rooms,
            publish_requires_join=limits.publish_requires_join,
            node_id=self.node_id,
        )
        self.metrics = HubMetrics(self.node)
        #: Samples event-loop lag into /metrics and the stats snapshots.
        self.loop_lag = LoopLagMonitor(observe=self.metrics.loop_lag_seconds.observe)
        #: Times every garbage collection into /metrics while the hub runs.
        self.gc_watch = GcWatch(self.metrics.observe_gc_pause)
        #: Pings silent WebSocket clients and closes (4002) those that do not answer;
        #: None with ``heartbeat.interval = 0``.
        hb = self.settings.heartbeat
        self.heartbeat = (
            Heartbeat(self.node.disconnect, interval=hb.interval, timeout=hb.timeout)
            if hb.interval > 0
            else None
        )
        #: Credentials and room grants (``[auth]``); no per-frame check with auth = "none".
        self.auth = Authorizer.from_settings(self.settings.auth)
        self.node.authorize = self.auth.authorize if self.auth.enabled else None
        #: Offsets, history, presence and routing across nodes: in memory, or
        #: Redis when ``redis_url`` is set (the distributed mode).
        #: ``broker``, ``runner`` and ``store`` given here replace the configured ones.
        self.broker: Broker = broker if broker is not None else build_broker(self.settings)
        self.node.use_broker(self.broker)
        #: Typed handlers and typed rooms (``@hub.on(..., model=)``, :meth:`room`,
        #: ``[[rooms]] model``): what publishes are validated by and AsyncAPI shows.
        self.schemas = Schemas()
        for i, r in enumerate(self.settings.rooms):
            if r.model is not None:
                self.room(r.pattern, model=import_model(r.model), source=f"rooms[{i}].model")
        self.started_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._stopping = False
        #: Set when start() has finished: only then are clients accepted.
        self._started_up = False
        self._router: APIRouter | None = None
        #: Started in this order by start(), stopped in reverse by stop().
        self.components: list[Component] = []
        self._started: list[Component] = []
        #: Called with (connection, bytes) for binary frames; None rejects them.
        self.binary_handler: Callable[[Connection, bytes], Coroutine[Any, Any, None]] | None = None
        self._lock = threading.Lock()
        self._start_interrupt: asyncio.Event | None = None

        # Services start first (before anything else) and stop last.
        #: Supervised programs by name: ``hub.services["java"].client``.
        self.services = Services(
            [ServiceSpec.from_dict(s.model_dump()) for s in self.settings.services],
            publish=self.publish,
        )
        self.components.insert(0, self.services)
        # The broker starts before anything can publish, and stops last.
        self.components.insert(0, self.broker)
        # Jobs and uploads start after services, before bridges.
        self.jobs, self.uploads = build_jobs(self.settings, self.node, self.publish, runner, store)
        self.binary_handler = self.uploads.binary
        self.components += [self.jobs, self.uploads]
        #: Token expiry/refresh/revocation and the grants of direct, jobs and uploads.
        self.tokens = self._build_tokens()
        # TCP bridges start after services and jobs (registered above this line).
        self._bridge_set = BridgeSet(
            self,
            [BridgeConfig(**b.model_dump()) for b in self.settings.bridges],
            stats_interval=self.settings.stats_interval,
            stop_timeout=self.settings.limits.close_timeout * 2,
        )
        #: Configured TCP bridges by name (``stats()`` on each).
        self.bridges: Mapping[str, TcpBridge] = self._bridge_set.bridges
        if self.bridges:
            self.components.append(self._bridge_set)

    def _build_tokens(self) -> TokenLifecycle:
        """The token lifecycle (auth_session.py), hooked into the node and the broker."""

        async def job_owner(job_id: str) -> str | None:
            record = await self.jobs.get(job_id)
            return None if record is None else record.client_id

        tokens = TokenLifecycle.from_settings(
            self.auth, self.node, self.settings.auth, job_owner=job_owner
        )
        tokens.install()
        broker = self.broker
        if hasattr(broker, "share_revocation"):  # a broker that shares revocations
            broker.on_revoke = tokens.apply  # type: ignore[attr-defined]
            tokens.share = broker.share_revocation
        return tokens

    def new_connection(self, client_id: str, transport: Any, **meta: object) -> Connection:
        """Make a Connection with the configured bounds (used by the WS and TCP adapters)."""
        limits = self.settings.limits
        return Connection(
            client_id,
            transport,
            max_queue=limits.queue_max_messages,
            max_queue_bytes=limits.queue_max_bytes,
            max_lag=limits.queue_max_lag,
            close_timeout=limits.close_timeout,
            on_slow=self.node.slow_consumer,
            meta=dict(meta),
            coalescer=self.node.coalescer,
        )

    @staticmethod
    def generate_client_id() -> str:
        """A random 16-hex-digit id, for a client that connects without ``client_id``."""
        return uuid.uuid4().hex[:16]

    @property
    def accepting(self) -> bool:
        """New clients are taken: the start has finished and no stop has begun.

        ``wirehub serve`` listens while the hub starts and while it drains; in
        those windows the WebSocket handshake and ``/readyz`` answer 503.
        """
        return self._running and self._started_up and not self._stopping

    @property
    def router(self) -> APIRouter:
        """The FastAPI router: /ws, /api/*, /healthz, /readyz, /metrics."""
        if self._router is None:
            from wirehub.web.routes import build_router

            self._router = build_router(self)
        return self._router

    # -- handlers ------------------------------------------------------------------

    def on(
        self,
        kind: str,
        *,
        model: type[BaseModel] | None = None,
        reply_model: type[BaseModel] | None = None,
    ) -> Callable[[H], H]:
        """Decorator: ``@hub.on("chat.typing")`` handles a custom frame type.

        The handler gets ``(connection, frame)`` and may return a dict, sent back
        as the reply (with the client's ``ref``), or raise a WirehubError, sent
        as an ``error`` frame with its code.

        With ``model`` (a pydantic model of the frame's fields, without ``type``
        and ``ref``) the frame is validated first and the handler gets
        ``(connection, message)``, the model instance; a frame that does not
        validate is answered ``bad_request`` with one ``errors`` entry per bad
        field, and the handler does not run. It may then also return a model
        instance (sent as ``<kind>.ok`` with its fields); with ``reply_model``
        its reply is validated by that model. Both are listed in
        :attr:`schemas` (the AsyncAPI document), with the docstring's first line.
        """

        def register(handler: H) -> H:
            entry = self.schemas.add_handler(kind, handler, model, reply_model)
            try:
                self.node.on(kind, typed_handler(entry, handler))
            except ValueError:
                del self.schemas.handlers[kind]  # a built-in type: nothing registered
                raise
            return handler

        return register

    def room(
        self,
        pattern: str,
        *,
        model: type[BaseModel],
        summary: str | None = None,
        source: str = "hub.room",
    ) -> TypedRoom:
        """Type the rooms matching ``pattern``: every publish's ``data`` must fit ``model``.

        From WebSocket ``publish``, HTTP ``POST /api/rooms/{room}/publish`` and
        :meth:`publish` alike; a refusal is ``bad_request`` with an ``errors``
        list (422 over HTTP, a raised BadRequest here) and nothing is delivered.
        Members get the validated data, ``model_dump(mode="json")``. The first
        matching pattern wins: ``[[rooms]] model`` entries, then these calls,
        in order. ``summary`` (default: the model's docstring) goes to AsyncAPI.
        """
        entry = self.schemas.add_room(pattern, model, summary, source=source)
        self.node.check_data = self.schemas.check_data
        return entry

    # -- server-side API -------------------------------------------------------------

    async def publish(
        self,
        room: str,
        data: Any,
        *,
        sender: str = SERVER_ID,
        exclude: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Publish ``data`` to ``room``; returns the message offset.

        Every member (on every node) gets ``message {room, from, data, offset, ts}``,
        and the message enters the room's history (if the room keeps one), so a
        client that reconnects with ``since`` recovers it. ``sender`` is the
        ``from`` members see (the server by default; a TCP bridge passes its peer's
        id); ``exclude`` skips one member (no echo). This is the one publish path
        for adapters and components: the frame is encoded once and never waits for
        a slow member.

        ``idempotency_key`` (1-128 printable characters, e.g. the id of the event
        being published) makes a retry harmless: a second publish with that key
        into ``room`` within ``limits.idempotency_window`` is not delivered and
        returns the first one's offset, on every node (docs/protocol.md).
        """
        return await self.node.publish_async(
            room, sender, data, exclude=exclude, idempotency_key=idempotency_key
        )

    async def send(self, client_id: str, data: Any, *, sender: str = SERVER_ID) -> None:
        """Send ``data`` to one client (on any node) as a ``direct`` frame; NotFound if absent.

        The client gets ``{"type": "direct", "from": sender, "data": data}``. It is
        not kept: a client that is offline or reconnecting never gets it (publish to
        a room the client joins when a message must survive a reconnect).
        """
        frame = {"type": "direct", "from": sender, "data": data}
        if not await self.broker.send(client_id, frame):
            raise NotFound(f"client '{client_id}' is not connected", to=client_id)

    async def broadcast(self, data: Any, *, sender: str = SERVER_ID) -> int:
        """Send ``data`` to every connection (of every node) as a ``broadcast`` frame.

        No room is involved: nothing is kept in history and nothing is replayed to a
        client that reconnects. Returns how many connections it was queued to (with
        Redis, the other nodes' share is their client count).
        """
        frame = {"type": "broadcast", "from": sender, "data": data}
        return await self.broker.broadcast(frame)

    async def disconnect(self, client_id: str, reason: str = "disconnected by the server") -> None:
        """Close a client of this node with code 4003 (kicked) and ``reason``.

        It leaves every room at once (members see ``presence`` leave events), frames
        still queued to it are dropped, and a :class:`~wirehub.client.HubClient` does
        not reconnect after that code. NotFound if it is not connected to this node.
        """
        conn = self.node.clients.get(client_id)
        if conn is None:
            raise NotFound(f"client '{client_id}' is not connected", to=client_id)
        self.node.disconnect(conn, CloseCode.KICKED, reason)

    # Thread-safe forms: callable from any thread; they return a
    # concurrent.futures.Future (do not wait on it from the hub's own loop).

    def publish_threadsafe(
        self, room: str, data: Any, *, idempotency_key: str | None = None
    ) -> concurrent.futures.Future[int]:
        """:meth:`publish` from any thread (a hardware callback, a sync library).

        Returns at once; ``future.result()`` is the offset. WirehubError if the hub
        is not running.
        """
        return self._threadsafe(self.publish(room, data, idempotency_key=idempotency_key))

    def send_threadsafe(self, client_id: str, data: Any) -> concurrent.futures.Future[None]:
        """:meth:`send` from any thread; ``future.result()`` raises NotFound if absent."""
        return self._threadsafe(self.send(client_id, data))

    def broadcast_threadsafe(self, data: Any) -> concurrent.futures.Future[int]:
        """:meth:`broadcast` from any thread; ``future.result()`` is the count."""
        return self._threadsafe(self.broadcast(data))

    def _threadsafe(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        loop = self._loop
        if loop is None or loop.is_closed() or not self._running:
            coro.close()
            raise WirehubError("the hub is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    # -- lifecycle ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """``FastAPI(lifespan=hub.lifespan)``: start before serving, stop after.

        Embedded in another server (``uvicorn app:app``, gunicorn, granian), the
        hub first takes what it can from it (src/wirehub/embedded.py): its log
        handlers, uvicorn's protocol classes, SIGTERM/SIGINT so clients get 1001
        before the server drops them; one WARNING lists what it cannot.
        """
        from wirehub.embedded import embedding_for

        embedding = embedding_for(self)
        embedding.enter()
        try:
            await self.start()
        except StartInterrupted as exc:
            # The server is already on its way out: no traceback, nothing to serve.
            logger.info("%s", exc)
            await embedding.close()
            yield
            return
        except BaseException:
            await embedding.close()
            raise
        try:
            yield
        finally:
            await self.stop()
            await embedding.close()

    async def start(self) -> None:
        """Start every part, in order, before the app takes requests; idempotent.

        The Redis broker (when configured), services (a required one is ready
        before the next starts), jobs, uploads, then TCP bridges; then the
        heartbeat, stats and housekeeping loops. All or nothing: if one part fails,
        those already started are stopped and its error (ServiceError,
        ConfigError…) is raised. :attr:`lifespan` calls it.
        """
        with self._lock:
            if self._running:
                return
            self._running = True
        self._stopping = False
        self._started_up = False
        self._loop = asyncio.get_running_loop()
        # Tokens travel in WebSocket query strings; uvicorn logs those paths.
        logredact.install()
        self.started_at = time.time()
        self.node.on_connect = self._client_event
        # 1. Components in order (services, jobs, bridges): all or nothing.
        self._start_interrupt = asyncio.Event()
        for component in self.components:
            try:
                await self._interruptible(component.start(), component.name)
            except BaseException:
                logger.error("start failed in %s; stopping what was started", component.name)
                await self._stop_components()
                self._running = False
                raise
            self._started.append(component)
        # 2. Background loops.
        if self.heartbeat is not None:
            self._spawn(self.heartbeat.run(self.node.clients.values()), "heartbeat")
        self._spawn(housekeeping_loop(self.node.rooms), "housekeeping")
        self.loop_lag.start()
        self.gc_watch.start()
        if self.settings.stats_interval > 0:
            self._spawn(
                publish_stats(
                    self.node, self.stats, self.loop_lag, self.settings.stats_interval, SERVER_ID
                ),
                "stats",
            )
        self._started_up = True
        logger.info("hub %s started", self.node_id)

    async def stop(self) -> None:
        """Stop in order; idempotent. Logs a summary with counts."""
        if not self._running or self._stopping:
            return
        self._stopping = True
        # 1. Stop background loops (heartbeat, stats, housekeeping, loop lag).
        self.loop_lag.stop()
        self.gc_watch.stop()
        for task in self._tasks:
            task.cancel()
        cancelled = len(self._tasks)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # 2. Tell clients when to come back (a random delay in the reconnect window,
        #    so a deploy is not a reconnect storm), then that we are going (1001),
        #    flushing their queues up to the drain timeout.
        shutdown = self.settings.shutdown
        low, high = shutdown.reconnect_window
        closed = await self.node.close_all(
            CloseCode.GOING_AWAY,
            "hub shutting down",
            timeout=shutdown.drain_timeout,
            farewell={"type": "reconnect", "delay_ms": [round(low * 1000), round(high * 1000)]},
        )
        # 3. Components in reverse order (bridges, jobs, services).
        await self._stop_components()
        self._running = False
        logger.info(
            "hub %s stopped: %d clients closed, %d loops cancelled, %d messages published, "
            "%d deliveries, %d slow consumers",
            self.node_id,
            closed,
            cancelled,
            self.node.rooms.published,
            self.node.rooms.deliveries,
            self.node.slow_consumers,
        )

    def interrupt_start(self) -> None:
        """Abandon a start in progress (a shutdown signal arrived while services start)."""
        if self._start_interrupt is not None:
            self._start_interrupt.set()

    async def _interruptible(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        interrupt = self._start_interrupt
        assert interrupt is not None
        step = asyncio.ensure_future(coro)
        waiter = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not step.done():
            step.cancel()
            with contextlib.suppress(BaseException):
                await step
            raise StartInterrupted(f"start interrupted by a shutdown signal while starting {name}")
        step.result()

    async def _stop_components(self) -> None:

        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                logger.exception("error while stopping %s", component.name)

    def _client_event(self, conn: Connection, event: str) -> None:
        if event == "connect" and self.heartbeat is not None:
            self.heartbeat.watch(conn)
        room = self.node.rooms.find(CLIENTS_ROOM)
        if room is not None and room.members:
            self.node.publish(
                CLIENTS_ROOM,
                SERVER_ID,
                {"event": event, "client_id": conn.id, "kind": conn.kind, "node": self.node_id},
            )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=f"wirehub-{name}"))

    async def collect_rooms(self) -> int:
        """Drop the idle rooms with nothing left to recover now; returns how many went.

        What housekeeping does every 30 s (core/housekeeping.py): in slices of
        COLLECT_SLICE, yielding to the loop between slices, so 100 000 rooms
        aging out at once never stall it.
        """
        return await _collect_rooms(self.node.rooms, slice_size=COLLECT_SLICE)

    def readiness(self) -> dict[str, bool]:
        """Named checks for ``/readyz``; every one must be true to take traffic."""
        checks = {"hub": self.accepting}
        for component in self.components:
            checks.update(component.readiness())
        return checks

    def stats(self) -> dict[str, Any]:
        """A snapshot of this node: connections, rooms, message counts, errors, memory.

        What ``$hub.stats`` carries every ``stats_interval`` (with rates added) and
        the dashboard shows; keys: ``node``, ``uptime``, ``connections``, ``rooms``,
        ``published``, ``deliveries``, ``slow_consumers``, ``errors`` (by code),
        ``rss_bytes``, ``loop_lag_ms``.
        """
        return snapshot(self.node, self.node_id, self.started_at, self.loop_lag)

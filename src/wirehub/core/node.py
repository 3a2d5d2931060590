"""The hub's state on one node: who is connected, which rooms exist, and the
built-in frame handlers (join, leave, publish, direct, presence, ping).

Plain asyncio: the web and TCP adapters create :class:`Connection` objects,
call :meth:`Node.connect` / :meth:`Node.handle` / :meth:`Node.disconnect`, and
the node does the rest. Every inbound frame gets exactly one reply or one
``error`` frame (echoing its ``ref``); no exception escapes to the adapter.

Every message goes through the node's :class:`~wirehub.core.interfaces.Broker`
(the memory broker unless another is given), in one process or many: the
broker sequences it and calls back :meth:`Node.deliver`, the one fan-out. The
node is the broker's :class:`~wirehub.core.interfaces.Local`; it builds every
reply (``joined``, ``ack``, ``presence``) itself, from what the broker says.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

from wirehub.core.coalesce import Coalescer
from wirehub.core.connection import Connection
from wirehub.core.idempotency import check_key
from wirehub.core.outbound import Outbound
from wirehub.core.protocol import (
    CloseCode,
    Frame,
    decode,
    encode,
    error_frame,
    opt_int,
    req_room,
    req_str,
)
from wirehub.core.rooms import MAX_MEMBERS_LISTED, RoomPolicy, RoomRegistry
from wirehub.errors import (
    BadRequest,
    Forbidden,
    LimitExceeded,
    NotFound,
    UnknownType,
    WirehubError,
)

if TYPE_CHECKING:
    from wirehub.core.interfaces import Broker, JoinInfo
    from wirehub.core.rooms import Room
    from wirehub.core.tokens import Sessions

__all__ = ["Handler", "Node", "joined_frame"]

logger = logging.getLogger("wirehub.node")

Handler = Callable[[Connection, Frame], "Awaitable[Frame | None] | Frame | None"]

BUILTIN_TYPES = frozenset({"join", "leave", "publish", "direct", "presence", "ping", "pong"})

#: Publishes a broker may have under way (waiting on Redis) before readers wait for them
#: (beyond it a reader awaits its publish: the socket's own backpressure).
MAX_PIPELINED = 1024


class Node:
    """Connections and rooms of one hub process, and what frames do to them."""

    def __init__(
        self,
        *,
        policies: Iterable[RoomPolicy] = (),
        max_frame: int = 64 * 1024,
        max_rooms_per_connection: int = 100,
        max_rooms: int = 100_000,
        publish_requires_join: bool = True,
        node_id: str = "local",
        broker: Broker | None = None,
    ) -> None:
        self.node_id = node_id
        self.rooms = RoomRegistry(policies, max_rooms=max_rooms)
        self.clients: dict[str, Connection] = {}
        #: One dirty list for every connection of this node: what a loop pass
        #: sends a peer leaves in one write at the end of the pass.
        self.coalescer = Coalescer()
        self.rooms.coalescer = self.coalescer
        # Publishes under way, acked when the broker is done (bounded by MAX_PIPELINED).
        self._publishing = 0
        self.max_frame = max_frame
        self.max_rooms_per_connection = max_rooms_per_connection
        self.publish_requires_join = publish_requires_join
        self.handlers: dict[str, Handler] = {}
        self._async_handlers: set[str] = set()
        # Counters read by the metrics collector at scrape time (no cost per frame).
        self.frames_in = 0
        self.bytes_in = 0
        self.connections_total = 0
        self.slow_consumers = 0
        self.errors: Counter[str] = Counter()
        self.fanout_observer: Callable[[float], None] | None = None
        #: Called with (connection, "connect" | "disconnect") as peers come and go.
        self.on_connect: Callable[[Connection, str], None] | None = None
        #: ``authorize(conn, action, target)`` raising Forbidden, for action in join,
        #: publish, history (a join with ``since``), presence (target: the room) and
        #: direct (target: the client id); None: no checks.
        self.authorize: Callable[[Connection, str, str], None] | None = None
        #: Checks run before the handler of a custom frame type (``job.submit``,
        #: ``upload.start``...): ``guard(conn, frame)`` raises Forbidden, or returns
        #: an awaitable that does (a check that needs a lookup).
        self.guards: dict[str, Callable[[Connection, Frame], Awaitable[None] | None]] = {}
        #: ``room_gate(conn, room, since)``, awaited *instead of* ``authorize`` for a
        #: join of a room starting with ``gated_prefix`` (``$job:<id>``: the job's
        #: submitter may read its events, and finding the submitter needs the job store).
        self.room_gate: Callable[[Connection, str, int | None], Awaitable[None]] | None = None
        self.gated_prefix = "$job:"
        #: Token expiry timers and the sub/jti index (``core.tokens.Sessions``), told
        #: of every peer that comes and goes; None with auth off.
        self.sessions: Sessions | None = None
        #: ``check_data(room, data) -> data``: the typed rooms' validation
        #: (``wirehub.typed.Schemas.check_data``), run where every publish enters
        #: (WebSocket, HTTP, ``hub.publish``); raises BadRequest. None while no
        #: room has a model, so untyped hubs pay nothing per publish.
        self.check_data: Callable[[str, Any], Any] | None = None
        # Built-ins that ask the broker (awaited); the others answer at once.
        self._async_builtins = frozenset({"join", "publish", "direct", "presence"})
        self._builtin: dict[str, Callable[[Connection, Frame], Any]] = {
            "join": self._on_join,
            "leave": self._on_leave,
            "publish": self._on_publish,
            "direct": self._on_direct,
            "presence": self._on_presence,
            "ping": self._on_ping,
            "pong": self._on_pong,
        }
        if broker is None:
            # The reference broker (one process). Imported here, not at the top:
            # the core depends on the Broker protocol, never on an implementation.
            from wirehub.brokers.memory import MemoryBroker

            broker = MemoryBroker()
        #: Sequences, keeps and routes every message (see the module docstring).
        self.broker: Broker = broker
        self.use_broker(broker)

    # -- handlers ------------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Register a handler for a custom frame ``type`` (not a built-in one)."""
        if kind in BUILTIN_TYPES:
            raise ValueError(f"'{kind}' is a built-in frame type and cannot be replaced")
        self.handlers[kind] = handler
        if inspect.iscoroutinefunction(handler):
            self._async_handlers.add(kind)
        else:
            self._async_handlers.discard(kind)

    def use_broker(self, broker: Broker) -> None:
        """Route every message through ``broker`` (before the hub starts)."""
        self.broker = broker
        self.rooms.observer = broker
        broker.bind(self)

    # -- connections -----------------------------------------------------------

    def connect(self, conn: Connection) -> None:
        """Register a new peer; an existing peer with the same id is replaced (4409)."""
        old = self.clients.get(conn.id)
        if old is not None:
            logger.info("[%s] replaced by a new connection", conn.id)
            self.disconnect(
                old, CloseCode.REPLACED, "replaced by a new connection with this client_id"
            )
        self.clients[conn.id] = conn
        self.connections_total += 1
        conn.start()
        if self.sessions is not None:
            self.sessions.attach(conn)
        self.broker.client_changed(conn, True)
        if self.on_connect is not None:
            self.on_connect(conn, "connect")

    def disconnect(self, conn: Connection, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Drop a peer from every room (presence ``leave``) and close it; idempotent."""
        conn.close(code, reason)
        self._forget(conn)

    def transport_lost(self, conn: Connection) -> None:
        """The adapter saw the socket go: forget the peer without a close handshake."""
        conn.transport_lost()
        self._forget(conn)

    def slow_consumer(self, conn: Connection) -> None:
        """``Connection.on_slow`` callback: count it and take it out of its rooms."""
        self.slow_consumers += 1
        self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        if self.sessions is not None:
            self.sessions.detach(conn)
        if self.clients.get(conn.id) is conn:
            del self.clients[conn.id]
            if self.on_connect is not None:
                self.on_connect(conn, "disconnect")
            self.rooms.leave_all(conn)
            self.broker.client_changed(conn, False)
        else:
            self.rooms.leave_all(conn)

    # -- inbound frames ----------------------------------------------------------

    async def handle(self, conn: Connection, payload: str | bytes) -> None:
        """Decode and dispatch one text frame; reply or send one ``error`` frame."""
        self.frames_in += 1
        self.bytes_in += len(payload)
        conn.frames_in += 1
        conn.last_seen = time.monotonic()
        conn.ping_sent = None
        ref = None
        try:
            frame = decode(payload, max_size=self.max_frame)
            ref = frame.get("ref")
            kind = frame["type"]
            builtin = self._builtin.get(kind)
            if builtin is not None:
                reply = builtin(conn, frame)
                # The built-ins that ask the broker are coroutines; ping/pong/leave
                # answer at once (no await for them).
                if kind in self._async_builtins:
                    reply = await reply
            else:
                handler = self.handlers.get(kind)
                if handler is None:
                    raise UnknownType(f"unknown frame type '{kind}'")
                guard = self.guards.get(kind)
                if guard is not None:
                    checked = guard(conn, frame)
                    if checked is not None:
                        await checked
                result = handler(conn, frame)
                reply = await result if kind in self._async_handlers else result  # type: ignore[misc]
            if reply is not None:
                if ref is not None:
                    reply["ref"] = ref
                conn.send(encode(reply))
        except WirehubError as exc:
            self.reject(conn, exc, ref)
        except Exception:
            logger.exception("[%s] handler failed", conn.id)
            self.reject(conn, WirehubError("internal error while handling the frame"), ref)

    def reject(self, conn: Connection, exc: WirehubError, ref: Any = None) -> None:
        self.errors[exc.code] += 1
        conn.send(error_frame(exc, ref))

    # -- built-in handlers -------------------------------------------------------

    def _join_args(self, conn: Connection, frame: Frame) -> tuple[str, int | None]:
        name = req_room(frame)
        since = opt_int(frame, "since")
        if self.authorize is not None:
            self.authorize(conn, "join", name)
            if since is not None:
                self.authorize(conn, "history", name)
        self._check_room_count(conn, name)
        return name, since

    async def _on_join(self, conn: Connection, frame: Frame) -> None:
        if self.room_gate is not None and self._gated(frame):
            return await self._join_gated(conn, frame)
        name, since = self._join_args(conn, frame)
        await self.join(conn, name, since, frame.get("ref"))

    def _gated(self, frame: Frame) -> bool:
        room = frame.get("room")
        return isinstance(room, str) and room.startswith(self.gated_prefix)

    async def _join_gated(self, conn: Connection, frame: Frame) -> None:
        """A join the ``room_gate`` decides (it may look something up first)."""
        name = req_room(frame)
        since = opt_int(frame, "since")
        assert self.room_gate is not None
        await self.room_gate(conn, name, since)
        if not conn.open:
            return  # gone while the gate looked it up
        self._check_room_count(conn, name)
        await self.join(conn, name, since, frame.get("ref"))

    def _check_room_count(self, conn: Connection, name: str) -> None:
        if name not in conn.rooms and len(conn.rooms) >= self.max_rooms_per_connection:
            raise LimitExceeded(
                f"a connection may be in at most {self.max_rooms_per_connection} rooms",
                limit=self.max_rooms_per_connection,
            )

    async def join(self, conn: Connection, name: str, since: int | None, ref: Any = None) -> None:
        """Join ``conn`` to ``name`` here, then queue ``joined`` (and, with ``since``,
        the missed messages) before any later message of the room."""
        self.rooms.join(conn, name)  # presence event; the broker hears it as observer

        def answer(info: JoinInfo) -> None:
            conn.send(encode(joined_frame(info, ref)))
            if info.replay is not None:
                for missed in info.replay.frames:
                    conn.send(missed)

        await self.broker.join(conn, name, since, answer)

    def _on_leave(self, conn: Connection, frame: Frame) -> Frame:
        name = req_room(frame)
        if not self.rooms.leave(conn, name):
            raise NotFound(f"not a member of room '{name}'", room=name)
        return {"type": "left", "room": name}

    def _publish_args(self, conn: Connection, frame: Frame) -> tuple[str, str | None]:
        name = req_room(frame)
        if "data" not in frame:
            raise BadRequest("missing field 'data'")
        if name.startswith("$"):
            raise Forbidden(
                f"room '{name}' is a system room: only the hub publishes there", room=name
            )
        if self.authorize is not None:
            self.authorize(conn, "publish", name)
        if self.publish_requires_join and name not in conn.rooms:
            raise Forbidden(f"join room '{name}' before publishing to it", room=name)
        return name, None if frame.get("echo") is True else conn.id

    async def _on_publish(self, conn: Connection, frame: Frame) -> Frame | None:
        name, exclude = self._publish_args(conn, frame)
        data = frame["data"] if self.check_data is None else self.check_data(name, frame["data"])
        key = check_key(frame.get("idempotency_key"))
        self.rooms.published += 1
        broker = self.broker
        if self._publishing >= MAX_PIPELINED:
            # Too many under way: this reader waits for its publish (backpressure).
            offset = await broker.publish(name, conn.id, data, exclude=exclude, idempotency_key=key)
            return {"type": "ack", "room": name, "offset": offset}
        # Acked when the offset is known: at once in one process; after a round trip
        # with Redis, while the reader goes on to its next frame (a burst then shares
        # round trips and writes). Offsets, deliveries and acks keep the frames' order.
        self._publishing += 1
        done = functools.partial(self._acked, conn, name, frame.get("ref"))
        try:
            broker.publish_soon(
                name, conn.id, data, exclude=exclude, idempotency_key=key, done=done
            )
        except BaseException:
            self._publishing -= 1
            raise
        return None

    def _acked(self, conn: Connection, name: str, ref: Any, result: int | BaseException) -> None:
        self._publishing -= 1
        if isinstance(result, asyncio.CancelledError):
            return  # the hub is stopping: the client is closed with 1001 anyway
        if not isinstance(result, BaseException):
            reply: Frame = {"type": "ack", "room": name, "offset": result}
            if ref is not None:
                reply["ref"] = ref
            conn.send(encode(reply))
        elif isinstance(result, WirehubError):
            self.reject(conn, result, ref)
        else:
            logger.error("[%s] publish failed", conn.id, exc_info=result)
            self.reject(conn, WirehubError("internal error while handling the frame"), ref)

    async def _on_direct(self, conn: Connection, frame: Frame) -> Frame:
        to = req_str(frame, "to", max_len=128)
        if "data" not in frame:
            raise BadRequest("missing field 'data'")
        if self.authorize is not None:
            self.authorize(conn, "direct", to)
        direct = {"type": "direct", "from": conn.id, "data": frame["data"]}
        if not await self.broker.send(to, direct):
            raise NotFound(f"client '{to}' is not connected", to=to)
        return {"type": "ack", "to": to}

    async def _on_presence(self, conn: Connection, frame: Frame) -> Frame:
        name = req_room(frame)
        if self.authorize is not None:
            self.authorize(conn, "presence", name)
        members = await self.broker.members(name)
        # Bounded: a list of at most MAX_MEMBERS_LISTED, not a copy of the room.
        return {
            "type": "presence",
            "room": name,
            "members": list(islice(members, MAX_MEMBERS_LISTED)),
            "member_count": len(members),
        }

    def _on_ping(self, conn: Connection, frame: Frame) -> Frame:
        return {"type": "pong", "ts": time.time()}

    def _on_pong(self, conn: Connection, frame: Frame) -> None:
        return None  # last_seen was refreshed in handle()

    # -- server-side operations ----------------------------------------------------

    async def publish_async(
        self,
        room: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Publish a message from the server side (``hub.publish``); returns its offset
        (the first one's for an ``idempotency_key`` already used in the window)."""
        if self.check_data is not None:
            data = self.check_data(room, data)
        key = check_key(idempotency_key)
        self.rooms.published += 1
        return await self.broker.publish(room, sender, data, exclude=exclude, idempotency_key=key)

    def publish(self, room: str, sender: str, data: Any, *, exclude: str | None = None) -> int:
        """:meth:`publish_async` for synchronous callers: the offset, or 0 when the
        broker cannot tell it without waiting (it queues the publish, in order)."""
        if self.check_data is not None:
            data = self.check_data(room, data)
        self.rooms.published += 1
        return self.broker.publish_nowait(room, sender, data, exclude=exclude)

    def send_direct(self, to: str, sender: str, data: Any) -> bool:
        return self.send_frame(to, {"type": "direct", "from": sender, "data": data})

    def send_frame(self, to: str, frame: Frame) -> bool:
        """Queue ``frame`` to client ``to``; a client on another node gets it through the broker."""
        target = self.clients.get(to)
        if target is None:
            # Not here: maybe on another node (sent without waiting; True = handed over).
            return self.broker.send_nowait(to, frame)
        return target.send(encode(frame))

    def broadcast(self, frame: Frame) -> int:
        return self.deliver_all(encode(frame))

    # -- what a broker may use (core.interfaces.Local) -------------------------------

    def sequence(self, room: str, sender: str, data: Any) -> tuple[int, str]:
        return self.rooms.sequence(room, sender, data)

    def deliver(self, room: str, frame: str, offset: int, exclude: str | None = None) -> int:
        """The fan-out of every message, in both modes (timed for the metrics).

        The one :class:`Outbound` envelope of this publish is made here and
        handed to every member, so each transport form is built once.
        """
        out = Outbound(frame)
        observer = self.fanout_observer
        if observer is None:
            return self.rooms.deliver(room, offset, out, exclude=exclude)
        started = time.perf_counter()
        sent = self.rooms.deliver(room, offset, out, exclude=exclude)
        observer(time.perf_counter() - started)
        return sent

    def deliver_event(self, room: str, frame: str, exclude: str | None = None) -> int:
        return self.rooms.broadcast_frame(room, frame, exclude=exclude)

    def deliver_to(self, client_id: str, frame: str) -> bool:
        target = self.clients.get(client_id)
        return target is not None and target.send(frame)

    def deliver_all(self, frame: str) -> int:
        out = Outbound(frame)
        return sum(1 for conn in list(self.clients.values()) if conn.send(out))

    def kick(self, client_id: str) -> None:
        conn = self.clients.get(client_id)
        if conn is not None:
            logger.info("[%s] connected to another node; closing it here", conn.id)
            self.disconnect(
                conn, CloseCode.REPLACED, "replaced by a new connection with this client_id"
            )

    def local_room(self, room: str) -> Room | None:
        return self.rooms.find(room)

    def local_rooms(self) -> list[Room]:
        return list(self.rooms)

    def local_client(self, client_id: str) -> Connection | None:
        return self.clients.get(client_id)

    def local_clients(self) -> list[Connection]:
        return list(self.clients.values())

    def policy_for(self, room: str) -> RoomPolicy:
        return self.rooms.policy_for(room)

    # -- shutdown ------------------------------------------------------------------

    async def close_all(
        self, code: int, reason: str, *, timeout: float, farewell: Frame | None = None
    ) -> int:
        """Close every peer (draining its queue) and wait up to ``timeout``.

        ``farewell`` is queued to every WebSocket peer first (the ``reconnect``
        window of a shutdown); TCP peers do not speak the protocol and get nothing.
        """
        conns = list(self.clients.values())
        if farewell is not None:
            text = Outbound(encode(farewell))
            for conn in conns:
                if conn.kind == "ws":
                    conn.send(text)
        # Close first so the presence ``leave`` frames below are not queued to
        # peers that are going away anyway (that would cost N² frames).
        for conn in conns:
            conn.close(code, reason, drain=True)
        for conn in conns:
            self._forget(conn)
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=timeout
            )
        return len(conns)


def joined_frame(info: JoinInfo, ref: Any = None) -> Frame:
    """The ``joined`` reply, the one place it is built (both modes, every broker)."""
    reply: Frame = {
        "type": "joined",
        "room": info.room,
        "offset": info.offset,
        "member_count": info.member_count,
    }
    if info.members is not None:
        reply["members"] = info.members
    if info.replay is not None:
        reply["recovered"] = info.replay.recovered
        reply["first_offset"] = info.replay.first_offset
    if ref is not None:
        reply["ref"] = ref
    return reply

"""The hub's state on one node: who is connected, which rooms exist, and the
built-in frame handlers (join, leave, publish, direct, presence, ping).

Plain asyncio: the web and TCP adapters create :class:`Connection` objects,
call :meth:`Node.connect` / :meth:`Node.handle` / :meth:`Node.disconnect`, and
the node does the rest. Every inbound frame gets exactly one reply or one
``error`` frame (echoing its ``ref``); no exception escapes to the adapter.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from wirehub.core.connection import Connection
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
from wirehub.core.rooms import RoomPolicy, RoomRegistry
from wirehub.errors import (
    BadRequest,
    Forbidden,
    LimitExceeded,
    NotFound,
    UnknownType,
    WirehubError,
)

__all__ = ["Handler", "Node"]

logger = logging.getLogger("wirehub.node")

Handler = Callable[[Connection, Frame], "Awaitable[Frame | None] | Frame | None"]

#: Members listed in a ``joined`` reply; ``member_count`` is always exact.
MAX_MEMBERS_LISTED = 1000
BUILTIN_TYPES = frozenset({"join", "leave", "publish", "direct", "presence", "ping", "pong"})


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
    ) -> None:
        self.node_id = node_id
        self.rooms = RoomRegistry(policies, max_rooms=max_rooms)
        self.clients: dict[str, Connection] = {}
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
        self._builtin: dict[str, Callable[[Connection, Frame], Frame | None]] = {
            "join": self._on_join,
            "leave": self._on_leave,
            "publish": self._on_publish,
            "direct": self._on_direct,
            "presence": self._on_presence,
            "ping": self._on_ping,
            "pong": self._on_pong,
        }

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
        if self.clients.get(conn.id) is conn:
            del self.clients[conn.id]
            if self.on_connect is not None:
                self.on_connect(conn, "disconnect")
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
            else:
                handler = self.handlers.get(kind)
                if handler is None:
                    raise UnknownType(f"unknown frame type '{kind}'")
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

    def _on_join(self, conn: Connection, frame: Frame) -> Frame | None:
        name = req_room(frame)
        since = opt_int(frame, "since")
        if name not in conn.rooms and len(conn.rooms) >= self.max_rooms_per_connection:
            raise LimitExceeded(
                f"a connection may be in at most {self.max_rooms_per_connection} rooms",
                limit=self.max_rooms_per_connection,
            )
        room, _ = self.rooms.join(conn, name)
        members = list(room.members)
        reply: Frame = {
            "type": "joined",
            "room": name,
            "offset": room.offset,
            "members": members[:MAX_MEMBERS_LISTED],
            "member_count": len(members),
        }
        if since is None:
            return reply
        replay = room.history.since(since)
        reply["recovered"] = replay.recovered
        reply["first_offset"] = replay.first_offset
        if ref := frame.get("ref"):
            reply["ref"] = ref
        # joined first, then the missed messages, then live ones: all queued in
        # this same step, so nothing published meanwhile can slip in between.
        conn.send(encode(reply))
        for missed in replay.frames:
            conn.send(missed)
        return None

    def _on_leave(self, conn: Connection, frame: Frame) -> Frame:
        name = req_room(frame)
        if not self.rooms.leave(conn, name):
            raise NotFound(f"not a member of room '{name}'", room=name)
        return {"type": "left", "room": name}

    def _on_publish(self, conn: Connection, frame: Frame) -> Frame:
        name = req_room(frame)
        if "data" not in frame:
            raise BadRequest("missing field 'data'")
        if name.startswith("$"):
            raise Forbidden(
                f"room '{name}' is a system room: only the hub publishes there", room=name
            )
        if self.publish_requires_join and name not in conn.rooms:
            raise Forbidden(f"join room '{name}' before publishing to it", room=name)
        echo = frame.get("echo") is True
        offset = self.publish(name, conn.id, frame["data"], exclude=None if echo else conn.id)
        return {"type": "ack", "room": name, "offset": offset}

    def _on_direct(self, conn: Connection, frame: Frame) -> Frame:
        to = req_str(frame, "to", max_len=128)
        if "data" not in frame:
            raise BadRequest("missing field 'data'")
        if not self.send_direct(to, conn.id, frame["data"]):
            raise NotFound(f"client '{to}' is not connected", to=to)
        return {"type": "ack", "to": to}

    def _on_presence(self, conn: Connection, frame: Frame) -> Frame:
        name = req_room(frame)
        room = self.rooms.get(name)
        members = list(room.members)
        return {
            "type": "presence",
            "room": name,
            "members": members[:MAX_MEMBERS_LISTED],
            "member_count": len(members),
        }

    def _on_ping(self, conn: Connection, frame: Frame) -> Frame:
        return {"type": "pong", "ts": time.time()}

    def _on_pong(self, conn: Connection, frame: Frame) -> None:
        return None  # last_seen was refreshed in handle()

    # -- server-side operations ----------------------------------------------------

    def publish(self, room: str, sender: str, data: Any, *, exclude: str | None = None) -> int:
        """Append to the room's history and fan out; returns the message offset."""
        started = time.perf_counter()
        offset, _ = self.rooms.publish(room, sender, data, exclude=exclude)
        if self.fanout_observer is not None:
            self.fanout_observer(time.perf_counter() - started)
        return offset

    def send_direct(self, to: str, sender: str, data: Any) -> bool:
        target = self.clients.get(to)
        if target is None:
            return False
        return target.send(encode({"type": "direct", "from": sender, "data": data}))

    def send_frame(self, to: str, frame: Frame) -> bool:
        target = self.clients.get(to)
        return target is not None and target.send(encode(frame))

    def broadcast(self, frame: Frame) -> int:
        encoded = encode(frame)
        return sum(1 for conn in list(self.clients.values()) if conn.send(encoded))

    # -- shutdown ------------------------------------------------------------------

    async def close_all(self, code: int, reason: str, *, timeout: float) -> int:
        """Close every peer (draining its queue) and wait up to ``timeout``."""
        conns = list(self.clients.values())
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

"""The WebSocket protocol: uvicorn's sans-I/O class with bounded control frames.

:class:`WirehubWebSocketProtocol` (``server.ws = "websockets-sansio"``) and
:class:`RawSendProtocol` (``"wirehub"``, the default, and ``"auto"``) add to
uvicorn's class:

- pings and pongs taken at ``rate``/``burst`` (a token bucket, the core's
  :class:`~wirehub.core.ratelimit.FrameLimiter`); beyond it they are not
  answered and count as violations, and persistent abuse closes with 4029;
- what a read owes the peer (pongs, a close echo) leaves in one write, only if
  the peer is taking its bytes: past ``queue_max_bytes`` beyond the socket's
  own buffer, or with the socket full for ``queue_max_lag`` seconds, the peer
  is a slow consumer (close 4001, counted);
- a close that the peer does not take within ``close_timeout`` drops the socket
  (asyncio keeps a closing transport until its buffer is flushed);
- a protocol violation (invalid UTF-8, bad opcode, unmasked frame) is one
  WARNING line and a count, never a traceback; a handshake websockets itself
  refuses is answered rather than left unanswered.

:class:`RawSendProtocol` adds the frame-once writer of :mod:`wirehub.web.rawsend`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, cast

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from wirehub.core.protocol import CloseCode
from wirehub.core.ratelimit import FrameLimiter
from wirehub.web.rawsend import EXTENSION, EXTENSION_MANY
from wirehub.web.uvicorn_protocols._common import logger, peer
from wirehub.web.wirelimits import LocalCounters, WireCounters, WireLimits

__all__ = ["RawSendProtocol", "WirehubWebSocketProtocol"]


class _ServerConnection(ServerProtocol):
    """websockets' server side, asking before it takes a ping or a pong.

    A refused ping is neither answered nor handed on; nor is any ping after
    the closing handshake began (RFC 6455 lets an endpoint ignore them).
    """

    #: Called when the state changes (RawSendProtocol keeps its write flag by it).
    on_state: Callable[[], None] | None = None

    def __init__(self, *, allow_control: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_control = allow_control

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        Protocol.state.fset(self, state)  # type: ignore[attr-defined]
        if self.on_state is not None:
            self.on_state()

    def recv_frame(self, frame: Frame) -> None:
        if (frame.opcode is Opcode.PING or frame.opcode is Opcode.PONG) and (
            self.state is not State.OPEN or not self.allow_control()
        ):
            return
        super().recv_frame(frame)


class _ClosingTransport:
    """The socket's transport, with a ``close()`` that cannot hang on a peer that stopped reading.

    asyncio and uvloop keep a closing transport (and its descriptor) until its
    buffer is flushed, which a peer that never reads never allows: the socket
    is dropped ``timeout`` seconds after ``close()`` if it still holds bytes.
    """

    __slots__ = (
        "_abort_timer",
        "_loop",
        "_timeout",
        "_transport",
        "get_write_buffer_size",
        "is_closing",
        "pause_reading",
        "resume_reading",
        "write",
        "writelines",
    )

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._timeout = timeout
        self._abort_timer: asyncio.TimerHandle | None = None
        # The hot methods, bound once (no indirection per frame).
        self.write = transport.write
        self.writelines = transport.writelines
        self.is_closing = transport.is_closing
        self.get_write_buffer_size = transport.get_write_buffer_size
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def close(self) -> None:
        transport = self._transport
        transport.close()
        if self._abort_timer is None and transport.get_write_buffer_size():
            self._abort_timer = self._loop.call_later(self._timeout, transport.abort)

    def abort(self) -> None:
        self.lost()
        self._transport.abort()

    def lost(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _ReceiveQueue:
    """What uvicorn's class needs of its ``asyncio.Queue``, without four eager deques.

    An ``asyncio.Queue`` allocates three deques and an Event (another deque) per
    connection, about 3 KiB that an idle connection never uses: the receive
    queue has one consumer (the app's ``receive``) and holds at most what one
    read brought in, so a list and one lazily created future do.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        items = self._items
        while not items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Writable:
    """uvicorn's ``writable`` ``asyncio.Event``, with its waiter future made only when waited on."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = True
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)
        return True


class WirehubWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with bounded control frames (module docstring)."""

    limits: ClassVar[WireLimits] = WireLimits()
    counters: ClassVar[WireCounters] = LocalCounters()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lighter stand-ins for the per-connection asyncio objects (see their docstrings).
        self.queue = _ReceiveQueue()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]
        limits = self.limits
        self.close_timeout = limits.close_timeout
        plain = self.conn
        self.conn = _ServerConnection(
            extensions=plain.available_extensions,
            max_size=self.config.ws_max_size,
            logger=plain.logger,
            allow_control=self._allow_control,
        )
        self._limiter = (
            FrameLimiter(
                limits.rate,
                limits.burst,
                abuse_limit=limits.abuse_limit,
                abuse_window=limits.abuse_window,
            )
            if limits.rate > 0
            else None
        )
        self._abusive = False
        #: The wire layer closed the connection itself (4001, 4029, a violation).
        self._failed = False
        self._paused_at: float | None = None
        self._max_buffer = limits.queue_max_bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._max_buffer = self.limits.queue_max_bytes + transport.get_write_buffer_limits()[1]
        wrapped = _ClosingTransport(transport, self.loop, self.close_timeout)
        super().connection_made(wrapped)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        transport = self.transport
        if isinstance(transport, _ClosingTransport):
            transport.lost()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._paused_at = self.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._paused_at = None

    # -- reading

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        if not self.handshake_initiated and conn.handshake_exc is not None:
            # websockets refused the request: send its answer (uvicorn does not),
            # or a 400 when it has none (not a valid WebSocket request at all).
            self.counters.errors["bad_http_request"] += 1
            self.handshake_complete = self.close_sent = True
            answer = b"".join(conn.data_to_send())
            if not answer:
                reason = f"Failed to open a WebSocket connection: {conn.handshake_exc}.\n"
                answer = conn.reject(400, reason).serialize()
            self.transport.write(answer)
            self.transport.close()
            return
        self.handle_events()
        if conn.parser_exc is not None:
            self.handle_parser_exception()
        elif self._abusive:
            self._flush()
            self._close_abusive()
        else:
            self._flush()

    def handle_ping(self) -> None:
        # The pong is in the connection's output: it leaves with the rest of
        # what this read owes the peer, in _flush.
        pass

    def _allow_control(self) -> bool:
        limiter = self._limiter
        if limiter is None or limiter.allow():
            return True
        self.counters.errors["rate_limited"] += 1
        if limiter.abusive:
            self._abusive = True
        return False

    def send_receive_event_to_app(self) -> None:
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.frames = []
        if self.close_sent:
            return  # past websocket.close: reads go on only for the peer's close
        event: Any
        if self.curr_msg_data_type == "text":
            try:
                event = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError as exc:
                self.conn.fail(1007, f"invalid UTF-8: {exc.reason} at position {exc.start}")
                self.handle_parser_exception()
                return
        else:
            event = {"type": "websocket.receive", "bytes": data}
        self.queue.put_nowait(event)
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_parser_exception(self) -> None:
        """A protocol violation: one WARNING line, a count, the close frame, then close."""
        conn = self.conn
        close = conn.close_sent
        code = close.code if close is not None else 1002
        reason = close.reason if close is not None else str(conn.parser_exc or "")
        self.counters.errors["too_large" if code == 1009 else "protocol_error"] += 1
        what = "message over the size limit" if code == 1009 else "WebSocket protocol error"
        logger.warning("%s %s, closing %d: %s", peer(self.client), what, code, reason)
        self._failed = True
        if not self.close_sent:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.close_sent = True
        self.transport.write(b"".join(conn.data_to_send()))
        self.transport.close()

    # -- writing what the peer is owed

    def _flush(self) -> None:
        data = b"".join(self.conn.data_to_send())
        transport = self.transport
        if not data or transport.is_closing():
            return
        paused_at = self._paused_at
        if transport.get_write_buffer_size() + len(data) > self._max_buffer or (
            paused_at is not None and self.loop.time() - paused_at > self.limits.queue_max_lag
        ):
            self._slow_consumer(len(data))
            return
        transport.write(data)

    def _slow_consumer(self, size: int) -> None:
        logger.warning(
            "%s slow consumer: %d bytes unsent and %d more owed, closing (4001)",
            peer(self.client),
            self.transport.get_write_buffer_size(),
            size,
        )
        self.counters.slow_consumers += 1
        self._fail(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")

    def _close_abusive(self) -> None:
        limiter = self._limiter
        logger.info(
            "%s closed: %d control frames over the rate limit",
            peer(self.client),
            limiter.rejected if limiter is not None else 0,
        )
        self._fail(CloseCode.RATE_LIMITED, "too many frames over the rate limit")

    def _fail(self, code: int, reason: str) -> None:
        """Close from the wire layer: tell the app, send the close frame, drop the socket."""
        transport = self.transport
        if transport.is_closing():
            return
        self._failed = True
        if not self.close_sent:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.close_sent = True
        self.conn.fail(code, reason)
        transport.write(b"".join(self.conn.data_to_send()))
        transport.close()

    async def send(self, message: Any) -> None:
        if self._failed:
            # Closed under the app by the wire layer: nothing more goes out.
            if message["type"] == "websocket.close":
                return
            raise ClientDisconnected()
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake is over: its parsed request and response (two header
            # multidicts, ~4 KiB) are never read again; the scope keeps the headers.
            # Emptied, not only dropped: websockets' parser generator keeps the
            # request in a local for the connection's lifetime.
            for handshake in (self.request, self.response):
                headers = getattr(handshake, "headers", None)
                if headers is not None:
                    headers.clear()
            del self.request, self.response


class RawSendProtocol(WirehubWebSocketProtocol):
    """The bounded protocol, offering wirehub a direct frame writer (:mod:`wirehub.web.rawsend`)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            # The app task was created but has not run yet: it sees this.
            extensions = scope["extensions"]
            extensions[EXTENSION] = self.write_frame
            extensions[EXTENSION_MANY] = self.write_frames

    #: The handshake is done and negotiated no extension (both final once true).
    _raw_plain = False
    #: A raw write may go out now (plain, writable, no close sent, state OPEN): one
    #: flag for the write of every delivery, kept by the few events that change it.
    _raw_ready = False
    _close_sent = False

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        self._raw_update()

    def _raw_update(self) -> None:
        # Short-circuits until the handshake is done (uvicorn's __init__ sets
        # close_sent before the objects the rest reads exist).
        self._raw_ready = (
            self._raw_plain
            and self.writable.is_set()
            and not self._close_sent
            and self.conn.state is State.OPEN
        )

    def pause_writing(self) -> None:
        super().pause_writing()
        self._raw_ready = False

    def resume_writing(self) -> None:
        super().resume_writing()
        self._raw_update()

    def connection_lost(self, exc: Exception | None) -> None:
        self._raw_plain = self._raw_ready = False
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if (
            message["type"] == "websocket.accept"
            and self.handshake_complete
            and not self.conn.extensions
            and not self.transport.is_closing()
        ):
            self._raw_plain = True
            cast(_ServerConnection, self.conn).on_state = self._raw_update
            self._raw_update()

    def write_frame(self, frame: bytes) -> bool:
        """Write a whole framed message now, or return False to take the ASGI path."""
        if self._raw_ready and not self.transport.is_closing():
            self.transport.write(frame)
            return True
        return False

    def write_frames(self, frames: list[bytes]) -> bool:
        """Write whole framed messages now in one vectored write, or return False."""
        if self._raw_ready and not self.transport.is_closing():
            self.transport.writelines(frames)
            return True
        return False

"""One peer of the hub: a WebSocket client or a TCP client.

A Connection owns a bounded outbound queue and exactly one writer task that
drains it into its :class:`Transport`. Fan-out only ever calls :meth:`send`,
which never awaits: when the queue is full, or the peer has not taken a frame
for ``max_lag`` seconds, the peer is a slow consumer and is closed with
:attr:`CloseCode.SLOW_CONSUMER` — the room does not wait for it.

Every frame travels as one :class:`~wirehub.core.outbound.Outbound` envelope
(a fan-out builds it once for all its members), so each transport form of it
is built once per publish.

Coalesced writes: a connection whose transport can write raw frames
(``Transport.coalesces``) and that is idle *corks* what it is sent during one
loop pass and flushes it in one :meth:`Transport.try_writelines` at the end of
the pass (core/coalesce.py): one write syscall for every frame of the pass.

Otherwise, when the queue is empty and nothing is being written, :meth:`send`
offers the envelope to :meth:`Transport.try_write`, which writes it whole at
once or declines; a declined frame waits in the queue for the writer task,
started then and ending when the queue is empty (an idle connection has
none). Nothing here ever awaits the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from wirehub.core.coalesce import CORK_MAX_BYTES, CORK_MAX_FRAMES, Coalescer, RoomPass
from wirehub.core.outbound import Outbound
from wirehub.core.protocol import CloseCode

__all__ = ["CORK_MAX_BYTES", "CORK_MAX_FRAMES", "Connection", "Transport"]

logger = logging.getLogger("wirehub.connection")

#: One entry of a cork: a frame, a room's pass still taking messages (only ever
#: the last entry), or a pass sealed at a length (what this peer takes of it).
CorkEntry = Outbound | RoomPass["Connection"] | tuple[RoomPass["Connection"], int]


class Transport(Protocol):
    """What a connection needs from its socket; implemented by the web and TCP adapters."""

    kind: str  # "ws" or "tcp"
    #: Whether :meth:`try_writelines` can take a pass's frames in one write
    #: (false: every frame goes through :meth:`try_write` / :meth:`send`).
    coalesces: bool

    def try_writelines(self, outs: list[Outbound]) -> bool:
        """Write all these frames now, in order, in one write, or decline (False)."""

    def try_write(self, out: Outbound) -> bool:
        """Write the whole frame now without waiting, or decline (return False).

        The web adapter writes the envelope's frame bytes straight to the socket
        when the server offers its raw-send extension and the socket is not
        paused; a transport without such a path always declines, and the
        connection takes :meth:`send`.
        """

    def send(self, out: Outbound) -> Awaitable[None]:
        """Write one frame; it may wait for the peer (only the connection's writer awaits it)."""

    async def close(self, code: int, reason: str) -> None:
        """Close politely (close frame / FIN); may wait for the peer."""

    def abort(self) -> None:
        """Drop the socket now; used when a polite close did not finish in time."""


class Connection:
    """A peer with an id, a set of rooms, a bounded queue and one writer task.

    Idle connections hold no asyncio objects of their own: the writer task,
    the queue and the closed-waiter are made when first needed (a frame the
    socket did not take at once, a close), so thousands of idle peers cost
    only their plain attributes.
    """

    __slots__ = (
        "__weakref__",  # uploads and others key weak tables by connection
        "_blocked_since",
        "_close_timeout",
        "_closed",
        "_closed_waiter",
        "_closer",
        "_closing",
        "_coalescer",
        "_cork",
        "_cork_bytes",
        "_cork_frames",
        "_draining",
        "_idle",
        "_max_lag",
        "_max_queue",
        "_max_queue_bytes",
        "_on_slow",
        "_queue",
        "_queued_bytes",
        "_started",
        "_try_write",
        "_write_frame",
        "_writer",
        "close_code",
        "close_reason",
        "connected_at",
        "frames_in",
        "frames_out",
        "id",
        "kind",
        "last_seen",
        "meta",
        "ping_sent",
        "rooms",
        "transport",
    )

    def __init__(
        self,
        client_id: str,
        transport: Transport,
        *,
        max_queue: int = 1024,
        max_queue_bytes: int = 2 * 1024 * 1024,
        max_lag: float = 5.0,
        close_timeout: float = 2.0,
        on_slow: Callable[[Connection], None] | None = None,
        meta: dict[str, object] | None = None,
        coalescer: Coalescer | None = None,
    ) -> None:
        self.id = client_id
        self.transport = transport
        self.kind = transport.kind
        self.rooms: set[str] = set()
        self.meta: dict[str, object] = meta or {}
        self.connected_at = time.time()
        self.last_seen = time.monotonic()
        self.ping_sent: float | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._max_lag = max_lag
        self._close_timeout = close_timeout
        self._on_slow = on_slow
        self._try_write = transport.try_write
        # A transport's raw writer of frame bytes, when it has one (web/ws.py): what
        # the end of a one-message pass calls for each member (flush_holders).
        self._write_frame: Callable[[bytes], bool] | None = getattr(transport, "write_frame", None)
        # Frames waiting for the writer (made on first use).
        self._queue: deque[Outbound] | None = None
        self._queued_bytes = 0
        # What this pass corked (None: this transport does not coalesce).
        self._coalescer = coalescer
        self._cork: list[CorkEntry] | None = (
            [] if coalescer is not None and transport.coalesces else None
        )
        self._cork_bytes = 0
        self._cork_frames = 0  # frames of the cork, but a live room pass's
        # Since when the peer has not taken what we gave it (None: it keeps up).
        self._blocked_since: float | None = None
        # Nothing queued, nothing pending, no writer running: a send may write at once.
        self._idle = False
        self._started = False
        self._closing = False
        self._draining = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closed = False
        self._closed_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.kind} rooms={len(self.rooms)} queued={self.queued}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start writing; frames sent before this wait in the queue."""
        if self._started:
            return
        self._started = True
        if self._queue:
            self._spawn_writer()
        else:
            self._idle = True

    @property
    def open(self) -> bool:
        return not self._closing

    @property
    def queued(self) -> int:
        return len(self._queue or ()) + len(_expand(self._cork or []))

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", *, drain: bool = False) -> None:
        """Schedule closing; idempotent. With ``drain`` the queue is flushed first."""
        if self._closing:
            return
        if drain:
            self.flush()
        self._closing = True
        self._draining = drain
        self.close_code = int(code)
        self.close_reason = reason
        if not drain:
            self._clear()
        self._closer = asyncio.get_running_loop().create_task(
            self._close(code, reason), name=f"wirehub-close-{self.id}"
        )

    async def wait_closed(self) -> None:
        if self._closed:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    def _set_closed(self) -> None:
        self._closed = True
        waiter = self._closed_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def transport_lost(self) -> None:
        """The peer went away on its own: stop writing, nothing to close politely."""
        if not self._closing:
            self._closing = True
            self.close_code = self.close_code or CloseCode.GOING_AWAY
            self._clear()
        self._uncork()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        if self._closer is None:
            self._set_closed()

    def _clear(self) -> None:
        if self._queue:
            self._queue.clear()
        self._queued_bytes = 0
        self._uncork()

    # -- sending -----------------------------------------------------------

    def send(self, frame: Outbound | str | bytes) -> bool:
        """Write or queue one encoded frame without waiting; False if it was dropped.

        A fan-out passes the one :class:`Outbound` of its publish; a single send
        may pass the encoded ``str`` (or ``bytes``) and it is wrapped here.

        A full queue (by count or bytes), or a peer that has not taken a frame
        for ``max_lag`` seconds, makes this peer a slow consumer: it is closed
        with 4001 and ``on_slow`` is called so the hub can count it and drop it
        from its rooms.
        """
        if self._closing:
            return False
        out = frame if isinstance(frame, Outbound) else Outbound(frame)
        if self._idle:
            cork = self._cork
            if cork is not None:
                cork = self._ready(cork)
                if cork is None:
                    return False
                cork.append(out)
                self._cork_bytes += out.size
                self._cork_frames += 1
                if self._cork_frames >= CORK_MAX_FRAMES or self._cork_bytes >= CORK_MAX_BYTES:
                    self.flush()
                return True
            if self._try_write(out):
                self.frames_out += 1
                return True
        return self._enqueue(out)

    def hold(self, room_pass: RoomPass[Connection]) -> bool:
        """Take every message ``room_pass`` holds and will hold this pass, as one cork entry.

        False when this peer cannot cork now (no raw writes, frames waiting for
        the writer, closing): the room sends it each message instead.
        """
        cork = self._cork
        if cork is None or not self._idle or self._closing:
            return False
        if cork:
            cork = self._ready(cork)
            if cork is None:
                return False
        # Not marked dirty itself: the room pass is, and flushes its holders.
        cork.append(room_pass)
        room_pass.live += 1
        holders = room_pass.holders
        if not holders:
            room_pass.coalescer.mark(room_pass)
        holders.append(self)
        return True

    def _ready(self, cork: list[CorkEntry]) -> list[CorkEntry] | None:
        """The cork, ready to take one more entry (None: the peer was lost in a flush).

        Marks this peer dirty on its first entry of the pass, seals a live room
        pass at the end, and writes what is there first when that reached the
        bounds (the peer stays on the dirty list for the rest of the pass).
        """
        if not cork:
            self._coalescer.mark(self)  # type: ignore[union-attr]
            return cork
        # Not empty: this peer is on the dirty list already, or it holds a room
        # pass that is (and that flushes it whatever else its cork holds).
        if cork[-1].__class__ is RoomPass:
            self._seal(cork)
            if self._cork_frames >= CORK_MAX_FRAMES or self._cork_bytes >= CORK_MAX_BYTES:
                self.flush()
                return None if self._closing else self._cork
        return cork

    def release(self, room_pass: RoomPass[Connection]) -> None:
        """Take no more of ``room_pass`` by reference (excluded from a message, leaving)."""
        cork = self._cork
        if cork and cork[-1] is room_pass:
            self._seal(cork)

    def _seal(self, cork: list[CorkEntry]) -> None:
        """The last entry is a live room pass: keep what it holds now, take the rest one by one."""
        room_pass: RoomPass[Connection] = cork[-1]  # type: ignore[assignment]
        taken = len(room_pass.messages)
        cork[-1] = (room_pass, taken)
        self._cork_bytes += room_pass.size
        self._cork_frames += taken
        room_pass.live -= 1
        if room_pass.current:
            room_pass.outside[self.id] = self

    def flush(self) -> None:
        """Write what this pass corked, in one write (the coalescer calls it once per pass).

        If the transport declines (its socket is paused: backpressure), the
        frames take the ordinary path in order: queued for the writer task
        under the same bounds as any other.
        """
        cork = self._cork
        if not cork:
            return
        # A cork that is just a room pass is written by the pass (flush_holders).
        if cork[-1].__class__ is RoomPass:
            self._seal(cork)
        self._cork = []
        self._cork_bytes = self._cork_frames = 0
        if not self._closing:
            outs = _expand(cork)
            self._write_corked(outs)
            if len(outs) > 1:
                self._coalescer.at_end.append(outs[0].forget_frames)  # type: ignore[union-attr]

    def _write_corked(self, outs: list[Outbound]) -> None:
        try:
            if len(outs) == 1:
                # Nothing to coalesce (one message this pass): the frame-once write,
                # the envelope's bytes straight to the server's writer when it has one.
                write_frame = self._write_frame
                out = outs[0]
                written = write_frame(out.ws_frame) if write_frame else self._try_write(out)
            else:
                written = self.transport.try_writelines(outs)
        except Exception as exc:  # the socket broke under us: the peer is gone
            logger.debug("[%s] write failed: %r", self.id, exc)
            self.transport_lost()
            return
        if written:
            self.frames_out += len(outs)
        else:
            self._write_declined(outs)

    def _write_declined(self, outs: list[Outbound]) -> None:
        """The socket did not take the pass's frames: each takes the ordinary path, in order."""
        for out in list(outs):
            if self._closing:
                return
            if self._idle and self._try_write(out):
                self.frames_out += 1
            else:
                self._enqueue(out)

    def _uncork(self) -> None:
        if self._cork:
            self._cork = []
            self._cork_bytes = self._cork_frames = 0

    def _enqueue(self, out: Outbound) -> bool:
        size = out.size
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if (
            len(queue) >= self._max_queue
            or self._queued_bytes + size > self._max_queue_bytes
            or (
                self._blocked_since is not None
                and time.monotonic() - self._blocked_since > self._max_lag
            )
        ):
            self._slow()
            return False
        queue.append(out)
        self._queued_bytes += size
        if self._idle:
            self._spawn_writer()
        return True

    def _spawn_writer(self) -> None:
        # Not idle from now on (the writer has frames), so that no later send
        # takes the fast path ahead of what it holds.
        self._idle = False
        if self._writer is None and self._started:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"wirehub-writer-{self.id}"
            )

    def _slow(self) -> None:
        logger.warning(
            "[%s] slow consumer: %d frames / %d bytes queued, closing",
            self.id,
            len(self._queue or ()),
            self._queued_bytes,
        )
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")
        if self._on_slow is not None:
            self._on_slow(self)

    async def _write_loop(self) -> None:
        """Drain what the socket did not take at once, then end (idle again)."""
        transport = self.transport
        try:
            while True:
                queue = self._queue
                while queue:
                    out = queue.popleft()
                    size = out.size
                    self._queued_bytes -= size
                    self._blocked_since = time.monotonic()
                    await transport.send(out)
                    self.frames_out += 1
                self._blocked_since = None
                if not self._queue:
                    break
        except Exception as exc:  # the socket broke under us: the peer is gone
            logger.debug("[%s] write failed: %r", self.id, exc)
            self.transport_lost()
        finally:
            self._writer = None
            if not self._closing:
                self._idle = True
                self._queue = None  # an idle peer keeps no queue

    async def _close(self, code: int, reason: str) -> None:
        # 1. Let the writer flush (drain) or stop it now.
        writer = self._writer
        if writer is not None and not writer.done():
            if self._draining:
                try:
                    await asyncio.wait_for(asyncio.shield(writer), self._close_timeout)
                except (TimeoutError, Exception):
                    writer.cancel()
            else:
                writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        # 2. Close politely, then abort a peer that does not take the close.
        try:
            await asyncio.wait_for(self.transport.close(code, reason), self._close_timeout)
        except Exception as exc:
            logger.debug("[%s] polite close failed (%r), aborting", self.id, exc)
            self.transport.abort()
        finally:
            self._set_closed()


def _expand(cork: list[CorkEntry]) -> list[Outbound]:
    """The frames a cork stands for, in order (a room pass: the messages this peer takes of it)."""
    outs: list[Outbound] = []
    for entry in cork:
        if entry.__class__ is Outbound:
            outs.append(entry)
        elif entry.__class__ is RoomPass:
            outs.extend(entry.messages)
        else:
            room_pass, end = entry  # type: ignore[misc]
            outs.extend(room_pass.messages[:end])
    return outs


def hold_fresh(
    room_pass: RoomPass[Connection], members: Iterable[Connection], excluded: object
) -> list[Connection]:
    """Let every member whose cork is empty hold ``room_pass``; returns the others.

    The fan-out of a room's first message of a pass, one loop over the room
    with nothing called per member: a member that keeps up and was sent
    nothing else this pass (the common case) takes the pass as its whole
    cork. The rest (``excluded``, a cork already holding something, frames
    waiting for the writer, no raw writes, closing) come back for the
    general path, after this loop: nothing here can close a member, so the
    room's table is iterated without a copy.
    """
    holders = room_pass.holders
    rest: list[Connection] = []
    for conn in members:
        cork = conn._cork
        if cork is not None and not cork and conn._idle and not conn._closing:
            if conn is excluded:
                rest.append(conn)
                continue
            cork.append(room_pass)
            holders.append(conn)
        else:
            rest.append(conn)
    if holders:
        room_pass.live += len(holders)
        room_pass.coalescer.mark(room_pass)
    return rest


def flush_holders(room_pass: RoomPass[Connection]) -> None:
    """The end of ``room_pass``'s loop pass: write it to every member that holds it.

    A member whose cork is just this pass (the common case) is written here,
    in this one loop — for a single message, its frame bytes straight to the
    server's raw writer, with nothing else called per member — without a call
    through :meth:`Connection.flush`; any other cork takes
    :meth:`Connection.flush`. A holder flushed already (its own bound, a
    close) has an empty cork and is skipped.
    """
    outs = room_pass.messages
    frame = outs[0].ws_frame if len(outs) == 1 else None
    for conn in room_pass.holders:
        cork = conn._cork
        if not cork:
            continue
        if len(cork) != 1 or cork[0] is not room_pass or conn._closing:
            conn.flush()
            continue
        del cork[0]
        write_frame = conn._write_frame
        if frame is None or write_frame is None:
            conn._write_corked(outs)
            continue
        try:
            written = write_frame(frame)
        except Exception as exc:  # the socket broke under us: the peer is gone
            logger.debug("[%s] write failed: %r", conn.id, exc)
            conn.transport_lost()
            continue
        if written:
            conn.frames_out += 1
        else:
            conn._write_declined(outs)

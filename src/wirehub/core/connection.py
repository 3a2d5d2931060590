"""One peer of the hub: a WebSocket client or a TCP client.

A Connection owns a bounded outbound queue and exactly one writer task that
drains it into its :class:`Transport`. Fan-out only ever calls :meth:`send`,
which never awaits: when the queue is full, or the peer has not taken a frame
for ``max_lag`` seconds, the peer is a slow consumer and is closed with
:attr:`CloseCode.SLOW_CONSUMER` — the room does not wait for it.

Every frame travels as one :class:`~wirehub.core.outbound.Outbound` envelope
(a fan-out builds it once for all its members), so each transport form of it
is built once per publish.

Fast writes: when the queue is empty and the writer is idle, :meth:`send`
first offers the envelope to :meth:`Transport.try_write`, which writes it
whole at once or declines. When it declines, :meth:`send`
steps the transport's ``send`` coroutine once, right away. If the socket takes
the bytes without blocking — the common case — the frame is written with no
queueing and no task switch (what ``websockets.broadcast`` does for a raw
server). If the transport has to wait (its buffer is full), the suspended
coroutine is handed to the writer task, which finishes it before anything
queued after it, so order is kept. Nothing here ever awaits the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from wirehub.core.outbound import Outbound
from wirehub.core.protocol import CloseCode

__all__ = ["Connection", "Transport"]

logger = logging.getLogger("wirehub.connection")


class Transport(Protocol):
    """What a connection needs from its socket; implemented by the web and TCP adapters."""

    kind: str  # "ws" or "tcp"

    def try_write(self, out: Outbound) -> bool:
        """Write the whole frame now without waiting, or decline (return False).

        The web adapter writes the envelope's frame bytes straight to the socket
        when the server offers its raw-send extension and the socket is not
        paused; a transport without such a path always declines, and the
        connection takes :meth:`send`.
        """

    def send(self, out: Outbound) -> Coroutine[Any, Any, None]:
        """A coroutine that writes one frame; it may wait for the peer.

        Only the connection calls it: at once when the peer is idle (stepping
        the coroutine itself), or from its writer task.
        """

    async def close(self, code: int, reason: str) -> None:
        """Close politely (close frame / FIN); may wait for the peer."""

    def abort(self) -> None:
        """Drop the socket now; used when a polite close did not finish in time."""


class Connection:
    """A peer with an id, a set of rooms, a bounded queue and one writer task."""

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
        self.bytes_out = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._max_lag = max_lag
        self._close_timeout = close_timeout
        self._on_slow = on_slow
        self._try_write = transport.try_write
        self._queue: deque[Outbound] = deque()

        self._queued_bytes = 0
        # A transport send that had to wait: (coroutine, what it yielded, size).
        self._pending: tuple[Coroutine[Any, Any, None], Any, int] | None = None
        # Since when the peer has not taken what we gave it (None: it keeps up).
        self._blocked_since: float | None = None
        self._idle = False
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False
        self._draining = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"<Connection {self.id} {self.kind} rooms={len(self.rooms)} queued={len(self._queue)}>"
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the writer task; frames sent before this wait in the queue."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"wirehub-writer-{self.id}"
            )

    @property
    def open(self) -> bool:
        return not self._closing

    @property
    def queued(self) -> int:
        return len(self._queue) + (self._pending is not None)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", *, drain: bool = False) -> None:
        """Schedule closing; idempotent. With ``drain`` the queue is flushed first."""
        if self._closing:
            return
        self._closing = True
        self._draining = drain
        self.close_code = int(code)
        self.close_reason = reason
        if not drain:
            self._queue.clear()
            self._queued_bytes = 0
        self._wake()
        self._closer = asyncio.get_running_loop().create_task(
            self._close(code, reason), name=f"wirehub-close-{self.id}"
        )

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def transport_lost(self) -> None:
        """The peer went away on its own: stop writing, nothing to close politely."""
        if not self._closing:
            self._closing = True
            self.close_code = self.close_code or CloseCode.GOING_AWAY
            self._queue.clear()
            self._queued_bytes = 0
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._drop_pending()
        if self._closer is None:
            self._closed.set()

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
        if self._idle and self._pending is None:
            if self._try_write(out):
                self.frames_out += 1
                self.bytes_out += out.size
                return True
            return self._send_eagerly(out)

        size = out.size
        queue = self._queue
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
            self._wake()
        return True

    def _send_eagerly(self, out: Outbound) -> bool:
        coro = self.transport.send(out)
        try:
            yielded = coro.send(None)
        except StopIteration:
            self.frames_out += 1
            self.bytes_out += out.size
            return True
        except Exception as exc:  # the socket broke under us: the peer is gone
            logger.debug("[%s] write failed: %r", self.id, exc)
            self.transport_lost()
            return False
        # The transport has to wait for the peer: the writer task finishes it.
        self._pending = (coro, yielded, out.size)
        self._blocked_since = time.monotonic()
        self._wake()
        return True

    def _slow(self) -> None:
        logger.warning(
            "[%s] slow consumer: %d frames / %d bytes queued, closing",
            self.id,
            len(self._queue),
            self._queued_bytes,
        )
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")
        if self._on_slow is not None:
            self._on_slow(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[0].close()
            self._pending = None

    async def _finish_pending(self) -> None:
        """Drive a transport send that :meth:`send` started and that had to wait."""
        assert self._pending is not None
        coro, yielded, size = self._pending
        while True:
            error: BaseException | None = None
            try:
                if yielded is None:
                    await asyncio.sleep(0)  # a bare yield: just give the loop a turn
                else:
                    # What a Task does with a future its coroutine yields: clear
                    # the "blocking" mark, then wait for it in this task.
                    yielded._asyncio_future_blocking = False
                    await yielded

            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being stopped; _drop_pending closes the coroutine
                error = asyncio.CancelledError()
            except Exception as exc:
                error = exc
            try:
                yielded = coro.send(None) if error is None else coro.throw(error)
            except StopIteration:
                break
        self._pending = None
        self.frames_out += 1
        self.bytes_out += size

    async def _write_loop(self) -> None:
        queue = self._queue
        transport = self.transport
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._pending is not None:
                    await self._finish_pending()
                while queue:
                    out = queue.popleft()
                    size = out.size
                    self._queued_bytes -= size
                    self._blocked_since = time.monotonic()
                    await transport.send(out)
                    self.frames_out += 1
                    self.bytes_out += size
                self._blocked_since = None
                if self._closing:
                    return
                self._waiter = loop.create_future()
                self._idle = True
                try:
                    await self._waiter
                finally:
                    self._idle = False
                    self._waiter = None
        except asyncio.CancelledError:
            self._drop_pending()
            raise
        except Exception as exc:  # the socket broke under us: the peer is gone
            logger.debug("[%s] write failed: %r", self.id, exc)
            self.transport_lost()

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
        self._drop_pending()
        # 2. Close politely, then abort a peer that does not take the close.
        try:
            await asyncio.wait_for(self.transport.close(code, reason), self._close_timeout)
        except Exception as exc:
            logger.debug("[%s] polite close failed (%r), aborting", self.id, exc)
            self.transport.abort()
        finally:
            self._closed.set()

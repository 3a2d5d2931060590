"""One peer of the hub: a WebSocket client or a TCP client.

A Connection owns a bounded outbound queue and exactly one writer task that
drains it into its :class:`Transport`. Fan-out only ever calls :meth:`send`,
which never awaits: when the queue is full the peer is a slow consumer and is
closed with :attr:`CloseCode.SLOW_CONSUMER` — the room does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from wirehub.core.protocol import CloseCode

__all__ = ["Connection", "Transport"]

logger = logging.getLogger("wirehub.connection")

Outbound = str | bytes


class Transport(Protocol):
    """What a connection needs from its socket; implemented by the web and TCP adapters."""

    kind: str  # "ws" or "tcp"

    async def send(self, frame: Outbound) -> None:
        """Write one frame; may wait for the peer (only the writer task calls it)."""

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
        max_queue_bytes: int = 8 * 1024 * 1024,
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
        self._close_timeout = close_timeout
        self._on_slow = on_slow
        self._queue: deque[Outbound] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
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
        return len(self._queue)

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
        self._wakeup.set()
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
        if self._closer is None:
            self._closed.set()

    # -- sending -----------------------------------------------------------

    def send(self, frame: Outbound) -> bool:
        """Queue one encoded frame without waiting; False if it was not queued.

        A full queue (by count or bytes) makes this peer a slow consumer: it is
        closed with 4001 and ``on_slow`` is called so the hub can count it and
        drop it from its rooms.
        """
        if self._closing:
            return False
        size = len(frame)
        if len(self._queue) >= self._max_queue or self._queued_bytes + size > self._max_queue_bytes:
            logger.warning(
                "[%s] slow consumer: %d frames / %d bytes queued, closing",
                self.id,
                len(self._queue),
                self._queued_bytes,
            )
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")
            if self._on_slow is not None:
                self._on_slow(self)
            return False
        self._queue.append(frame)
        self._queued_bytes += size
        if len(self._queue) == 1:
            self._wakeup.set()
        return True

    async def _write_loop(self) -> None:
        queue = self._queue
        transport = self.transport
        try:
            while True:
                while queue:
                    frame = queue.popleft()
                    size = len(frame)
                    self._queued_bytes -= size
                    await transport.send(frame)
                    self.frames_out += 1
                    self.bytes_out += size
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except asyncio.CancelledError:
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
        # 2. Close politely, then abort a peer that does not take the close.
        try:
            await asyncio.wait_for(self.transport.close(code, reason), self._close_timeout)
        except Exception as exc:
            logger.debug("[%s] polite close failed (%r), aborting", self.id, exc)
            self.transport.abort()
        finally:
            self._closed.set()

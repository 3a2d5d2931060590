"""The WebSocket heartbeat: ping a silent client, close one that does not answer.

A client silent for ``interval`` seconds gets ``{"type":"ping"}``; if nothing
comes back within ``timeout`` seconds of the ping it is closed with 4002
(``heartbeat timeout``) and leaves its rooms. Any inbound frame answers:
:meth:`wirehub.core.node.Node.handle` stamps ``conn.last_seen`` and clears
``conn.ping_sent``, and that is all a frame costs the heartbeat.

The work per tick is proportional to the connections *due* in it, never to the
table: each watched connection sits in exactly one bucket of a timing wheel,
keyed by the tick of its next check (``last_seen + interval``; while a ping is
unanswered, ``ping_sent + timeout`` or, sooner, when an answer would make the next
ping due), and a min-heap of bucket keys says which
buckets are due. A check that finds the client was heard from meanwhile just
files it again at its new due time (lazily: a frame never touches the wheel), so
a busy client costs one check per ``interval`` and an idle hub of 100 000
clients wakes up to look at the few whose time came. Closed connections are
dropped when their bucket comes due.

Plain asyncio and no settings: the hub passes the bounds as keywords, starts
:meth:`Heartbeat.run` as a task, tells it of each new peer (:meth:`watch`) and
cancels the task to stop it. :meth:`tick` is the whole decision, callable with
any clock for tests.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable

from wirehub.core.connection import Connection
from wirehub.core.protocol import CloseCode

__all__ = ["PING_FRAME", "Heartbeat"]

logger = logging.getLogger("wirehub.heartbeat")

#: What a silent client is sent (encoded once, shared by every ping).
PING_FRAME = '{"type":"ping"}'

Disconnect = Callable[[Connection, int, str], None]


class Heartbeat:
    """Pings silent WebSocket peers and closes (4002) those that do not answer in time.

    ``disconnect(conn, code, reason)`` closes a peer and takes it out of its rooms
    (the node's :meth:`~wirehub.core.node.Node.disconnect`). ``resolution`` is the
    tick: a ping leaves within ``interval + resolution`` of the last frame, a close
    within ``timeout + resolution`` of the ping (default: a quarter of the shorter
    bound, between 50 ms and 1 s). ``clock`` must be the one ``last_seen`` is
    stamped with (``time.monotonic``).
    """

    def __init__(
        self,
        disconnect: Disconnect,
        *,
        interval: float = 20.0,
        timeout: float = 20.0,
        resolution: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("heartbeat interval and timeout must be positive")
        self.interval = interval
        self.timeout = timeout
        self.resolution = (
            min(1.0, max(0.05, min(interval, timeout) / 4)) if resolution is None else resolution
        )
        self._disconnect = disconnect
        self._clock = clock
        #: Tick number -> connections to check once that tick has come.
        self._buckets: dict[int, list[Connection]] = {}
        #: The keys of ``_buckets``, smallest first.
        self._due: list[int] = []
        self._running = False
        #: Pings sent and peers closed for not answering (since construction).
        self.pings = 0
        self.timeouts = 0

    def __len__(self) -> int:
        """Connections on the wheel (closed ones stay until their bucket comes due)."""
        return sum(len(bucket) for bucket in self._buckets.values())

    @property
    def running(self) -> bool:
        return self._running

    # -- filing --------------------------------------------------------------

    def watch(self, conn: Connection) -> None:
        """Start watching a newly connected peer (TCP peers are not pinged); O(log buckets).

        Ignored while the heartbeat is stopped: :meth:`start` picks up the
        peers already connected.
        """
        if self._running and conn.kind == "ws" and conn.open:
            self._file(conn, conn.last_seen + self.interval, 0)

    def _file(self, conn: Connection, due: float, after: int) -> None:
        # Checked at the first tick boundary strictly after ``due`` (so the
        # comparisons in _check hold), and never in a tick already processed.
        slot = max(math.floor(due / self.resolution) + 1, after + 1)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = []
            heapq.heappush(self._due, slot)
        bucket.append(conn)

    # -- deciding ------------------------------------------------------------

    def tick(self, now: float) -> int:
        """Check every connection due by ``now``; returns how many were looked at."""
        current = math.floor(now / self.resolution)
        due, buckets = self._due, self._buckets
        checked = 0
        while due and due[0] <= current:
            for conn in buckets.pop(heapq.heappop(due)):
                checked += 1
                self._check(conn, now, current)
        return checked

    def _check(self, conn: Connection, now: float, current: int) -> None:
        if not conn.open:
            return  # gone (closed, replaced, slow consumer, socket lost): forget it
        ping_sent = conn.ping_sent
        if ping_sent is None:
            # No ping outstanding (or it was answered): silent long enough?
            if now - conn.last_seen > self.interval:
                conn.ping_sent = now
                self.pings += 1
                conn.send(PING_FRAME)
                self._file_pinged(conn, now, now, current)
            else:
                self._file(conn, conn.last_seen + self.interval, current)
        elif now - ping_sent > self.timeout:
            self.timeouts += 1
            logger.info("[%s] heartbeat timeout, closing", conn.id)
            self._disconnect(conn, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
        else:
            self._file_pinged(conn, ping_sent, now, current)

    def _file_pinged(self, conn: Connection, ping_sent: float, now: float, current: int) -> None:
        # Two things can be due: the timeout (ping_sent + timeout), or, once the
        # peer answers at some time after now, the next ping (answer + interval,
        # so no sooner than now + interval). Look again at the earlier of the two:
        # a timeout longer than the interval must not delay the next ping.
        self._file(conn, min(ping_sent + self.timeout, now + self.interval), current)

    # -- running -------------------------------------------------------------

    def start(self, peers: Iterable[Connection] = ()) -> None:
        """Begin watching ``peers``, those already connected (new ones come by :meth:`watch`)."""
        self.stop()
        self._running = True
        for conn in list(peers):
            self.watch(conn)

    def stop(self) -> None:
        """Stop watching and let go of every connection on the wheel; idempotent."""
        self._running = False
        self._buckets.clear()
        self._due.clear()

    async def run(self, peers: Iterable[Connection] = ()) -> None:
        """:meth:`start`, then :meth:`tick` every ``resolution`` seconds until cancelled."""
        self.start(peers)
        try:
            while True:
                await asyncio.sleep(self.resolution)
                self.tick(self._clock())
        finally:
            self.stop()

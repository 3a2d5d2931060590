"""Rate limits, sans I/O: a token bucket per connection and per-client limits for handlers.

A peer over its rate — frames per second, or bytes per second when
``bytes_rate`` is set — gets ``error rate_limited`` for each extra frame (the
frame is dropped, not queued). Persistent abuse — ``abuse_limit`` rejected
frames within ``abuse_window`` seconds — tells the adapter to close the peer
with :attr:`CloseCode.RATE_LIMITED` (4029). The WebSocket reader loop and the
TCP bridges share :class:`FrameLimiter`; ``job.submit`` is wrapped with
:func:`limit_per_client`.

Costs one ``time.monotonic()`` and a few float operations per frame; with a
rate of 0 the adapters build no limiter at all.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from wirehub.errors import RateLimited

if TYPE_CHECKING:
    from wirehub.core.connection import Connection

__all__ = ["FrameLimiter", "KeyedLimiter", "TokenBucket", "limit_per_client"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per frame."""

    __slots__ = ("_last", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, *, now: float | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self._last = time.monotonic() if now is None else now

    def take(self, now: float | None = None, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are that many; False means over the rate."""
        if now is None:
            now = time.monotonic()
        tokens = self.tokens + (now - self._last) * self.rate
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= cost:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def spend(self, now: float, cost: float) -> float:
        """Spend ``cost`` tokens even into debt; the seconds until the debt is paid."""
        tokens = min(self.burst, self.tokens + (now - self._last) * self.rate) - cost
        self._last = now
        self.tokens = tokens
        return -tokens / self.rate if tokens < 0 else 0.0

    def full(self, now: float) -> bool:
        """True when the bucket has refilled completely (the key can be forgotten)."""
        return self.tokens + (now - self._last) * self.rate >= self.burst


class FrameLimiter:
    """One connection's inbound rate: token buckets plus the abuse counter.

    ``allow(size)`` is called once per inbound frame with its size in bytes. A
    frame must fit both the frame bucket (``rate``/``burst``; rate 0: none) and
    the byte bucket (``bytes_rate``/``bytes_burst``; 0: none). After a refusal,
    ``abusive`` says whether the peer should now be closed; ``error()`` names the
    limit that refused the last frame.
    """

    __slots__ = (
        "_bucket",
        "_bytes",
        "_window_start",
        "abuse_limit",
        "abuse_window",
        "last_refused",
        "rejected",
        "strikes",
    )

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        abuse_limit: int = 100,
        abuse_window: float = 10.0,
        bytes_rate: float = 0.0,
        bytes_burst: int = 0,
    ) -> None:
        self._bucket = TokenBucket(rate, burst) if rate > 0 else None
        self._bytes = (
            TokenBucket(bytes_rate, max(1, bytes_burst or int(bytes_rate)))
            if bytes_rate > 0
            else None
        )
        #: "frames" or "bytes": which bucket refused the last refused frame.
        self.last_refused = "frames"
        self.abuse_limit = abuse_limit
        self.abuse_window = abuse_window
        #: Frames refused over the connection's life (for logs and stats).
        self.rejected = 0
        #: Refusals in the current abuse window.
        self.strikes = 0
        self._window_start = 0.0

    @property
    def rate(self) -> float:
        return 0.0 if self._bucket is None else self._bucket.rate

    @property
    def burst(self) -> int:
        return 0 if self._bucket is None else int(self._bucket.burst)

    @property
    def bytes_rate(self) -> float:
        return 0.0 if self._bytes is None else self._bytes.rate

    @property
    def bytes_burst(self) -> int:
        return 0 if self._bytes is None else int(self._bytes.burst)

    def allow(self, size: int = 0) -> bool:
        now = time.monotonic()
        frames, octets = self._bucket, self._bytes
        if frames is None or frames.take(now):
            if octets is None or octets.take(now, size):
                return True
            if frames is not None:
                frames.tokens += 1.0  # the frame was not taken: give its token back
            self.last_refused = "bytes"
        else:
            self.last_refused = "frames"
        self.rejected += 1
        if now - self._window_start > self.abuse_window:
            self._window_start = now
            self.strikes = 0
        self.strikes += 1
        return False

    def pace(self, size: int) -> float | None:
        """For a frame that is paced rather than refused when over the byte rate.

        Upload chunks are accepted data: refusing one mid-upload would break the
        upload, so the byte bucket goes into debt and the reader waits the returned
        seconds before reading on (TCP backpressure slows the sender). The frame
        rate still refuses (None: answer with :meth:`error`, as for :meth:`allow`).
        """
        now = time.monotonic()
        frames, octets = self._bucket, self._bytes
        if frames is not None and not frames.take(now):
            self.last_refused = "frames"
            self.rejected += 1
            if now - self._window_start > self.abuse_window:
                self._window_start = now
                self.strikes = 0
            self.strikes += 1
            return None
        return 0.0 if octets is None else octets.spend(now, size)

    @property
    def abusive(self) -> bool:
        return self.abuse_limit > 0 and self.strikes >= self.abuse_limit

    def error(self) -> RateLimited:
        if self.last_refused == "bytes":
            return RateLimited(
                f"too many bytes: at most {self.bytes_rate:g} per second "
                f"(burst {self.bytes_burst})",
                limit=self.bytes_rate,
                unit="bytes",
            )
        return RateLimited(
            f"too many frames: at most {self.rate:g} per second (burst {self.burst})",
            limit=self.rate,
        )


class KeyedLimiter:
    """A token bucket per key (client id), forgetting keys whose bucket is full again.

    ``per_minute`` actions per minute, all of which may come at once. The table
    is swept when it grows past ``max_keys`` so it stays bounded.
    """

    def __init__(self, per_minute: float, *, max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._sweep(now)
            bucket = self._buckets[key] = TokenBucket(
                self.per_minute / 60.0, self.per_minute, now=now
            )
        return bucket.take(now)

    def _sweep(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # all busy: forget the oldest half
            for key in list(self._buckets)[: self.max_keys // 2]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


Handler = Callable[["Connection", dict[str, Any]], Any]


def limit_per_client(handler: Handler, per_minute: float, *, what: str) -> Handler:
    """Wrap a frame handler: more than ``per_minute`` calls per client id get ``rate_limited``.

    Keeps the handler's sync/async nature (the node awaits only async handlers).
    """
    limiter = KeyedLimiter(per_minute)

    def check(conn: Connection) -> None:
        if not limiter.allow(conn.id):
            raise RateLimited(
                f"too many {what}: at most {per_minute:g} per minute", limit=per_minute
            )

    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def limited_async(conn: Connection, frame: dict[str, Any]) -> Any:
            check(conn)
            return await handler(conn, frame)

        limited_async.limiter = limiter  # type: ignore[attr-defined]
        return limited_async

    @functools.wraps(handler)
    def limited(conn: Connection, frame: dict[str, Any]) -> Awaitable[Any] | Any:
        check(conn)
        return handler(conn, frame)

    limited.limiter = limiter  # type: ignore[attr-defined]
    return limited

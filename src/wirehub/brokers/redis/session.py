"""The Redis session of one node: connect, subscribe, resync, read; reconnect with backoff.

:class:`Session` is the connection half of :class:`~wirehub.brokers.redis.broker.RedisBroker`
(a base class, so the broker reads as what it does with messages). One session
runs at a time: it subscribes this node's channels and every room with local
members, registers the node, resyncs each room, then reads the channels until
the connection drops; :meth:`Session._run` starts the next one after a
jittered, capped :func:`wirehub.backoff.backoff` delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from wirehub.backoff import backoff
from wirehub.core.pump import Pump

if TYPE_CHECKING:
    from wirehub.brokers.redis.broker import RoomSync
    from wirehub.brokers.redis.registry import Registry

__all__ = ["FAILURES", "MAX_PENDING_OPS", "Op", "Session", "safe_url"]

logger = logging.getLogger("wirehub.broker")

#: What a lost or unreachable Redis raises.
FAILURES = (RedisError, OSError, TimeoutError)
#: Operations waiting for Redis before new ones are dropped (and counted).
MAX_PENDING_OPS = 100_000

#: One write for Redis, run in order by the op pump: a coroutine function and its arguments.
Op = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]


class Session:
    """Connection state and the reconnect loop (the broker supplies the hooks below)."""

    url: str
    node_id: str
    op_timeout: float
    reconnect_cap: float
    node_heartbeat: float
    outages: int
    dropped_ops: int
    reaped: int
    _redis: Any
    _registry: Registry
    _rooms: dict[str, RoomSync]
    _channels: list[str]
    _ops: Pump[Op]

    def _init_session(self) -> None:
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._pubsub: Any = None
        self._broken = asyncio.Event()
        self._connected = False
        self._started = asyncio.Event()
        self._session_ok = False

    # Hooks of the broker.

    def _on_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _on_session(self, first: bool) -> None:
        """Connected and subscribed: register, resync (may raise a failure)."""
        raise NotImplementedError

    def _on_lost(self) -> None:
        """The connection was lost (``_connected`` was true)."""
        raise NotImplementedError

    # The loop.

    async def _run(self) -> None:
        delays = backoff(initial=0.1, cap=self.reconnect_cap)
        first = True
        while True:
            reason = "connection closed"
            try:
                await self._session(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(exc)
                reason = f"{type(exc).__name__}: {exc}"
            if self._session_ok:
                # It worked for a while: start the backoff over.
                delays = backoff(initial=0.1, cap=self.reconnect_cap)
                first = False
            delay = next(delays)
            logger.warning("redis unreachable (%s); reconnecting in %.2fs", reason, delay)
            await asyncio.sleep(delay)

    async def _session(self, first: bool) -> None:
        self._session_ok = False
        self._broken.clear()
        pubsub = self._redis.pubsub()
        self._pubsub = pubsub
        self._confirm.clear()
        reader: asyncio.Task[None] | None = None
        try:
            for st in self._rooms.values():
                st.order.synced = False
                st.subscribed = False
            await self._subscribe_many(pubsub, self._channels, wait=False)
            reader = asyncio.get_running_loop().create_task(self._read(pubsub))
            await self._wait_confirmed(reader)
            # Rooms joined meanwhile: subscribe until none is missing, then
            # mark connected with no await in between (no join can slip by).
            while missing := [st for st in self._rooms.values() if not st.subscribed]:
                await self._subscribe_many(pubsub, [st.channel for st in missing], wait=False)
                for st in missing:
                    st.subscribed = True
                await self._wait_confirmed(reader)
            self._connected = True
            await self._on_session(first)
            self._session_ok = True
            self._started.set()
            logger.info(
                "%s redis at %s as node %s (%d rooms)",
                "connected to" if first else "reconnected to",
                safe_url(self.url),
                self.node_id,
                len(self._rooms),
            )
            broken = asyncio.get_running_loop().create_task(self._broken.wait())
            try:
                await asyncio.wait([reader, broken], return_when=asyncio.FIRST_COMPLETED)
            finally:
                broken.cancel()
            if reader.done() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            raise ConnectionError("redis connection lost")
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            self._pubsub = None
            with contextlib.suppress(BaseException):
                await pubsub.aclose()

    async def _subscribe_many(self, pubsub: Any, channels: list[str], *, wait: bool) -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for channel in channels:
            fut: asyncio.Future[None] = loop.create_future()
            self._confirm[channel.encode()] = fut
            futures.append(fut)
        await pubsub.subscribe(*channels)
        if wait:
            await asyncio.wait_for(asyncio.gather(*futures), self.op_timeout)

    async def _wait_confirmed(self, reader: asyncio.Task[None]) -> None:
        waiting = [f for f in self._confirm.values() if not f.done()]
        if not waiting:
            return
        confirmed = asyncio.gather(*waiting)
        race: list[asyncio.Future[Any]] = [reader, confirmed]
        done, _ = await asyncio.wait(
            race, timeout=self.op_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if confirmed not in done:
            confirmed.cancel()
            if reader in done:
                reader.result()
                raise ConnectionError("redis subscription ended")
            raise TimeoutError("redis did not confirm the subscriptions in time")

    async def _read(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            try:
                if message["type"] == "subscribe":
                    fut = self._confirm.pop(message["channel"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif message["type"] == "message":
                    self._on_message(message)
            except Exception:
                logger.exception("bad message from redis: %r", message)

    def _lost(self, exc: BaseException) -> None:
        """Redis failed: deliver locally from now on and let the session reconnect."""
        self._broken.set()
        if not self._connected:
            return
        self._connected = False
        self.outages += 1
        logger.warning(
            "redis connection lost (%s): delivering on this node only until it is back",
            exc or type(exc).__name__,
        )
        self._on_lost()

    # -- the ordered op queue and the heartbeat ----------------------------------------------------

    def _new_op_pump(self) -> Pump[Op]:
        """Writes run one at a time, in order; past MAX_PENDING_OPS new ones are dropped."""
        return Pump(self._run_op, maxsize=MAX_PENDING_OPS, name="wirehub-redis-ops")

    def _enqueue(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if not self._ops.offer((fn, args)):
            self.dropped_ops += 1

    async def _flush(self) -> None:
        """Wait until every op queued before this call has run."""
        await self._ops.drain()

    async def _run_op(self, op: Op) -> None:
        fn, args = op
        try:
            await fn(*args)
        except FAILURES as exc:
            self._lost(exc)
        except Exception:
            logger.exception("redis broker operation %s failed", fn.__name__)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node_heartbeat)
            if not self._connected:
                continue
            try:
                await self._registry.heartbeat()
                self.reaped += await self._registry.reap()
            except FAILURES as exc:
                self._lost(exc)


def safe_url(url: str) -> str:
    """The URL without its password (for logs and errors)."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"

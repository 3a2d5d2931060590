"""The Redis broker: several hub nodes share offsets, history, presence and clients.

How a message travels (one Lua script, so its steps are atomic and ordered):

1. ``INCR`` the room's offset, ``XADD`` the encoded frame to the room's
   stream (id ``<offset>-0``, trimmed by length and age) and ``PUBLISH`` it on
   the room's channel with the publishing node's id.
2. The publishing node applies it to its own members when the script returns;
   every other node subscribed to the room applies it when the channel
   delivers it; each node drops its own echo (socketio's ``host_id`` filter).
3. Each node delivers a room's messages strictly in offset order, once: a
   message that arrives ahead of a missing offset waits (``gap_timeout``),
   then the missing ones are read back from the stream; those no longer there
   become a ``gap`` notice to the room's members.

A node subscribes to a room's channel only while the room has local members.
Presence and the client registry are Redis hashes written by their node; each
node refreshes a heartbeat deadline in ``P:nodes`` and removes the members of
nodes whose deadline passed (sending their ``leave`` events).

Outage: publishes fall back to this node's members (``offset: null``,
``"local": true``), ``readiness()`` is false, and a supervisor reconnects with
:func:`wirehub.backoff.backoff`, resubscribes, rewrites this node's presence,
replays what the stream holds, and sends ``gap`` notices where messages may
be missing (docs/protocol.md, "Distributed mode").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from wirehub.backoff import backoff
from wirehub.brokers.keys import Keys
from wirehub.brokers.redis_registry import Registry
from wirehub.brokers.redis_revocations import TAG as REVOKE_TAG
from wirehub.brokers.redis_revocations import RevocationStore
from wirehub.brokers.redis_scripts import PUBLISH_SCRIPT, SET_MAX_SCRIPT
from wirehub.core.history import Replay
from wirehub.core.interfaces import ClientRecord
from wirehub.core.protocol import CloseCode, Frame, encode
from wirehub.core.rooms import MAX_MEMBERS_LISTED
from wirehub.core.tokens import Revocation
from wirehub.errors import NotFound, WirehubError

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.node import Node

__all__ = ["RedisBroker"]

logger = logging.getLogger("wirehub.broker")

#: Operations waiting for Redis before new ones are dropped (and counted).
MAX_PENDING_OPS = 100_000
#: Redis connections of one node (commands beyond wait up to ``op_timeout`` for one).
MAX_REDIS_CONNECTIONS = 64

_FAILURES = (RedisError, OSError, TimeoutError)


@dataclass(eq=False)
class _RoomSync:
    """Delivery state of one room on this node (exists while it has local members)."""

    name: str
    channel: str
    #: Last offset delivered here; None until the first sync with Redis.
    delivered: int | None = None
    #: Messages that arrived ahead of a missing offset (or while held).
    pending: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    #: Joins in progress hold delivery so ``joined`` + replay come first.
    paused: int = 0
    subscribed: bool = False
    synced: bool = False
    ready: asyncio.Future[None] | None = None
    gap_timer: asyncio.TimerHandle | None = None
    #: ``delivered`` when the broker was lost (None: connected since the last sync).
    outage_offset: int | None = None
    #: The room's outage marker as this node last knew it (``P:room:R:gap``): a
    #: higher one after a reconnect means some node delivered messages locally.
    marker: int = 0


class RedisBroker:
    """A :class:`wirehub.core.interfaces.Broker` over one Redis server."""

    name = "redis"
    distributed = True

    def __init__(
        self,
        node: Node,
        url: str,
        *,
        prefix: str = "wirehub",
        node_heartbeat: float = 2.0,
        node_ttl: float = 10.0,
        gap_timeout: float = 1.0,
        op_timeout: float = 5.0,
        reconnect_cap: float = 10.0,
    ) -> None:
        self.node = node
        self.node_id = node.node_id
        self._node_b = self.node_id.encode()
        self.url = url
        self.keys = Keys(prefix)
        self.node_heartbeat = node_heartbeat
        self.node_ttl = node_ttl
        self.gap_timeout = gap_timeout
        self.op_timeout = op_timeout
        self.reconnect_cap = reconnect_cap
        # No hidden retries: a lost connection must surface here, so that the
        # resubscribe and resync below happen (a silent reconnect loses messages).
        # A blocking pool: a burst of joins (a reconnect storm) waits for a free
        # connection instead of failing with "Too many connections" — which would
        # count as an outage and degrade every join to local, unrecovered.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_REDIS_CONNECTIONS,
            timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            socket_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._publish = self._redis.register_script(PUBLISH_SCRIPT)
        self._registry = Registry(self._redis, self.keys, node, node_ttl=node_ttl)
        self._set_max = self._redis.register_script(SET_MAX_SCRIPT)
        self._rooms: dict[str, _RoomSync] = {}
        self._by_channel: dict[bytes, _RoomSync] = {}
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._local_only: set[str] = set()
        self._ops: asyncio.Queue[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]] = (
            asyncio.Queue()
        )
        self._pubsub: Any = None
        self._broken = asyncio.Event()
        self._connected = False
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._channel_node = self.keys.node_channel(self.node_id)
        self._revocations = RevocationStore(
            self._redis, prefix, channel=self.keys.broadcast, node_id=self.node_id
        )
        #: Called with every revocation of another node (and all of them, loaded
        #: from Redis, when a session starts): the token lifecycle applies it here.
        self.on_revoke: Callable[[Revocation], None] | None = None
        # Counters (stats, shutdown summary).
        self.outages = 0
        self.gaps = 0
        self.dropped_ops = 0
        self.reaped = 0

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="wirehub-redis-session"),
            loop.create_task(self._op_loop(), name="wirehub-redis-ops"),
            loop.create_task(self._heartbeat_loop(), name="wirehub-redis-heartbeat"),
        ]
        try:
            await asyncio.wait_for(self._started.wait(), self.op_timeout)
        except TimeoutError:
            await self.stop()
            raise WirehubError(f"cannot reach Redis at {_safe_url(self.url)}") from None

    async def stop(self) -> None:
        """Flush queued writes, take this node out of Redis, close; idempotent."""
        if not self._tasks:
            return
        # 1. Let queued presence/registry writes (the clients' leaves) go out.
        if self._connected:
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(self._flush(), self.op_timeout)
        # 2. Stop the loops.
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # 3. Remove what this node registered (members left already, above).
        if self._connected:
            with contextlib.suppress(*_FAILURES):
                await self._registry.deregister()
        self._connected = False
        for st in self._rooms.values():
            if st.gap_timer is not None:
                st.gap_timer.cancel()
        with contextlib.suppress(*_FAILURES):
            await self._redis.aclose()
        logger.info(
            "redis broker stopped: %d outages, %d gaps, %d dead nodes reaped, %d ops dropped",
            self.outages,
            self.gaps,
            self.reaped,
            self.dropped_ops,
        )

    def readiness(self) -> dict[str, bool]:
        return {"redis": self._connected}

    @property
    def connected(self) -> bool:
        return self._connected

    # -- the session: connect, subscribe, resync, read -------------------------------

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

    _session_ok = False

    async def _session(self, first: bool) -> None:
        self._session_ok = False
        self._broken.clear()
        pubsub = self._redis.pubsub()
        self._pubsub = pubsub
        self._confirm.clear()
        reader: asyncio.Task[None] | None = None
        try:
            for st in self._rooms.values():
                st.synced = False
                st.subscribed = False
            await self._subscribe_many(
                pubsub, [self._channel_node, self.keys.broadcast], wait=False
            )
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
            await self._registry.register()
            await self._load_revocations()
            for st in list(self._rooms.values()):
                if self._rooms.get(st.name) is st:
                    await self._sync_room(st, outage=not first)
            self._local_only.clear()
            self._session_ok = True
            self._started.set()
            logger.info(
                "%s redis at %s as node %s (%d rooms)",
                "connected to" if first else "reconnected to",
                _safe_url(self.url),
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
        done, _ = await asyncio.wait(
            [reader, confirmed], timeout=self.op_timeout, return_when=asyncio.FIRST_COMPLETED
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
        for st in self._rooms.values():
            st.synced = False
            if st.outage_offset is None:
                st.outage_offset = st.delivered

    # -- inbound pub/sub ---------------------------------------------------------------

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            fut = self._confirm.pop(message["channel"], None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if kind != "message":
            return
        data: bytes = message["data"]
        tag = data[:1]
        if tag == b"M":
            st = self._by_channel.get(message["channel"])
            if st is None:
                return
            _, node, exclude, offset, frame = data.split(b"\t", 4)
            if node == self._node_b:
                return  # our own: applied when the script returned
            self._apply(st, int(offset), frame.decode(), exclude.decode() or None)
        elif tag == b"P":
            st = self._by_channel.get(message["channel"])
            if st is None:
                return
            _, node, frame = data.split(b"\t", 2)
            room = self.node.rooms.find(st.name)
            if node != self._node_b and room is not None and room.presence_events():
                self.node.rooms.broadcast_frame(st.name, frame.decode())
        elif tag == b"G":
            st = self._by_channel.get(message["channel"])
            if st is None:
                return
            _, node, marker, frame = data.split(b"\t", 3)
            if node != self._node_b:
                st.marker = max(st.marker, int(marker))
                self.gaps += 1
                self.node.rooms.broadcast_frame(st.name, frame.decode())
        elif tag == b"D":
            _, to, frame = data.split(b"\t", 2)
            conn = self.node.clients.get(to.decode())
            if conn is not None:
                conn.send(frame.decode())
        elif tag == b"K":
            conn = self.node.clients.get(data[2:].decode())
            if conn is not None:
                logger.info("[%s] connected to another node; closing it here", conn.id)
                self.node.disconnect(
                    conn, CloseCode.REPLACED, "replaced by a new connection with this client_id"
                )
        elif tag == REVOKE_TAG:
            node, revocation = self._revocations.parse_notice(data)
            if node != self._node_b and self.on_revoke is not None:
                self.on_revoke(revocation)
        elif tag == b"B":
            _, node, frame = data.split(b"\t", 2)
            if node != self._node_b:
                text = frame.decode()
                for conn in list(self.node.clients.values()):
                    conn.send(text)

    # -- ordered delivery ----------------------------------------------------------------

    def _apply(self, st: _RoomSync, offset: int, frame: str, exclude: str | None) -> None:
        delivered = st.delivered
        if st.synced and not st.paused and delivered is not None and offset == delivered + 1:
            st.delivered = offset
            self.node.rooms.deliver(st.name, offset, frame, exclude=exclude)
            if st.pending:
                self._drain(st)
            return
        if delivered is not None and offset <= delivered:
            return  # already delivered (our echo, or replayed from the stream)
        st.pending[offset] = (frame, exclude)
        if st.synced and not st.paused:
            self._drain(st)

    def _drain(self, st: _RoomSync) -> None:
        if not st.synced or st.paused or st.delivered is None:
            return
        pending = st.pending
        for stale in [o for o in pending if o <= st.delivered]:
            del pending[stale]
        deliver = self.node.rooms.deliver
        while pending:
            item = pending.pop(st.delivered + 1, None)
            if item is None:
                if st.gap_timer is None:
                    st.gap_timer = asyncio.get_running_loop().call_later(
                        self.gap_timeout, self._gap_due, st
                    )
                return
            st.delivered += 1
            deliver(st.name, st.delivered, item[0], exclude=item[1])

    def _gap_due(self, st: _RoomSync) -> None:
        st.gap_timer = None
        if self._rooms.get(st.name) is st and st.pending and self._connected:
            self._enqueue(self._fill, st)

    async def _fill(self, st: _RoomSync) -> None:
        """Read the offsets missing before the pending ones back from the stream."""
        if not st.pending or st.delivered is None or not st.synced:
            return
        await self._catch_up(st, min(st.pending) - 1)
        self._drain(st)

    async def _catch_up(self, st: _RoomSync, upto: int) -> None:
        """Deliver offsets ``delivered+1..upto`` from the stream; a ``gap`` for the rest."""
        assert st.delivered is not None
        start = st.delivered + 1
        if upto < start:
            return
        entries = await self._redis.xrange(
            self.keys.stream(st.name), f"{start}-0", f"{upto}-0", count=upto - start + 1
        )
        deliver = self.node.rooms.deliver
        for entry_id, fields in entries:
            offset = _entry_offset(entry_id)
            if offset <= st.delivered:
                continue
            if offset != st.delivered + 1:
                self._gap(st, st.delivered + 1, offset - 1, "history_trimmed")
            st.delivered = offset
            deliver(st.name, offset, fields[b"f"].decode(), exclude=_exclude(fields))
        if st.delivered < upto:
            self._gap(st, st.delivered + 1, upto, "history_trimmed")
            st.delivered = upto

    def _gap(self, st: _RoomSync, first: int, last: int | None, reason: str) -> None:
        self.gaps += 1
        frame: Frame = {"type": "gap", "room": st.name, "reason": reason}
        if last is not None:
            frame["from_offset"], frame["to_offset"] = first, last
        logger.warning("room %s: gap (%s) %s..%s", st.name, reason, first, last)
        self.node.rooms.broadcast_frame(st.name, encode(frame))

    async def _sync_room(self, st: _RoomSync, *, outage: bool) -> None:
        """Align ``st`` with Redis (first subscribe or after a reconnect), then release it."""
        r = self._redis
        current = int(await r.get(self.keys.offset(st.name)) or 0)
        if st.delivered is None:
            st.delivered = current
        elif current < st.delivered:
            # Redis lost its data: keep offsets growing and say so.
            await self._set_max(keys=[self.keys.offset(st.name)], args=[st.delivered])
            st.pending.clear()
            self._gap(st, current + 1, None, "broker_reset")
        elif current > st.delivered:
            await self._catch_up(st, current)
        marker = int(await r.get(self.keys.gap(st.name)) or 0)
        if outage and st.outage_offset is not None and marker > st.marker:
            # Another node delivered messages locally while we were cut off.
            self._gap(st, st.outage_offset + 1, None, "broker_outage")
        if outage and st.name in self._local_only:
            # Our members saw messages no other node got: mark the room, tell the others.
            marker = max(marker, current, st.delivered)
            gap = encode(
                {"type": "gap", "room": st.name, "offset": marker, "reason": "broker_outage"}
            )
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.gap(st.name), marker)
                pipe.pexpire(self.keys.gap(st.name), self._ttl_ms(st.name))
                pipe.publish(st.channel, f"G\t{self.node_id}\t{marker}\t{gap}")
                await pipe.execute()
        st.marker = max(st.marker, marker)
        st.outage_offset = None
        st.synced = True
        if st.ready is not None and not st.ready.done():
            st.ready.set_result(None)
        self._drain(st)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, room: str, sender: str, data: Any, *, exclude: str | None) -> int:
        ts = time.time()
        head = encode({"type": "message", "room": room, "from": sender, "data": data, "ts": ts})
        head = head[:-1] + ',"offset":'
        if self._connected:
            policy = self.node.rooms.policy_for(room)
            try:
                offset = int(
                    await self._publish(
                        keys=[self.keys.offset(room), self.keys.stream(room)],
                        args=[
                            head,
                            policy.history_size,
                            self._ttl_ms(room),
                            self.node_id,
                            exclude or "",
                            self.keys.room_channel(room),
                        ],
                    )
                )
            except _FAILURES as exc:
                self._lost(exc)
            else:
                self.node.rooms.published += 1
                st = self._rooms.get(room)
                if st is not None:
                    self._apply(st, offset, f"{head}{offset}}}", exclude)
                return offset
        # Degraded: this node's members only, without an offset.
        self._local_only.add(room)
        self.node.rooms.published += 1
        self.node.rooms.broadcast_frame(room, f'{head}null,"local":true}}', exclude=exclude)
        return 0

    def publish_nowait(self, room: str, sender: str, data: Any, *, exclude: str | None) -> None:
        self._enqueue(self._publish_op, room, sender, data, exclude)

    async def _publish_op(self, room: str, sender: str, data: Any, exclude: str | None) -> None:
        await self.publish(room, sender, data, exclude=exclude)

    def _ttl_ms(self, room: str) -> int:
        return max(1, int(self.node.rooms.policy_for(room).history_ttl * 1000))

    # -- joining and membership ----------------------------------------------------------------

    def _state(self, room: str) -> _RoomSync:
        st = self._rooms.get(room)
        if st is None:
            channel = self.keys.room_channel(room)
            st = _RoomSync(room, channel, ready=asyncio.get_running_loop().create_future())
            self._rooms[room] = st
            self._by_channel[channel.encode()] = st
        return st

    def _drop_state(self, st: _RoomSync) -> None:
        if self._rooms.get(st.name) is st:
            del self._rooms[st.name]
            self._by_channel.pop(st.channel.encode(), None)
        if st.gap_timer is not None:
            st.gap_timer.cancel()
            st.gap_timer = None

    async def join(
        self, conn: Connection, room: str, since: int | None, ref: Any = None
    ) -> Frame | None:
        st = self._state(room)
        st.paused += 1
        try:
            try:
                self.node.rooms.join(conn, room)
            except WirehubError:
                local = self.node.rooms.find(room)
                if local is None or not local.members:
                    self._drop_state(st)
                raise
            reply = None
            if self._connected:
                try:
                    assert st.ready is not None
                    await asyncio.wait_for(asyncio.shield(st.ready), self.op_timeout)
                    await asyncio.wait_for(self._flush(), self.op_timeout)
                    reply, frames = await self._joined(st, since)
                except _FAILURES as exc:
                    if not isinstance(exc, TimeoutError):
                        self._lost(exc)
            if reply is None:
                reply, frames = self._joined_locally(st, since)
            if ref is not None:
                reply["ref"] = ref
            # joined, then the replay, then (below, on release) live messages.
            conn.send(encode(reply))
            for frame in frames:
                conn.send(frame)
            return None
        finally:
            st.paused -= 1
            if not st.paused:
                self._drain(st)

    async def _joined(self, st: _RoomSync, since: int | None) -> tuple[Frame, list[str]]:
        head = st.delivered or 0
        key = self.keys.presence(st.name)
        # The member list only where presence is on (as on one node): reading a
        # big room's whole presence hash on every join is O(members) per join,
        # O(N²) for N clients (re)joining at once.
        local = self.node.rooms.find(st.name)
        reply: Frame = {"type": "joined", "room": st.name, "offset": head}
        if local is not None and local.presence_events():
            names = [m.decode() for m in await self._redis.hkeys(key)]
            reply["members"] = names[:MAX_MEMBERS_LISTED]
            reply["member_count"] = len(names)
        else:
            reply["member_count"] = int(await self._redis.hlen(key))
        frames: list[str] = []
        if since is not None:
            replay = await self._replay(st.name, since, head, None)
            reply["recovered"], reply["first_offset"] = replay.recovered, replay.first_offset
            frames = replay.frames
        return reply, frames

    def _joined_locally(self, st: _RoomSync, since: int | None) -> tuple[Frame, list[str]]:
        room = self.node.rooms.get(st.name)
        head = st.delivered if st.delivered is not None else room.offset
        members = list(room.members)
        reply: Frame = {
            "type": "joined",
            "room": st.name,
            "offset": head,
            "members": members[:MAX_MEMBERS_LISTED],
            "member_count": len(members),
        }
        if since is not None:
            # History is in Redis, out of reach: only "nothing missed" is certain.
            reply["recovered"] = False
            reply["first_offset"] = head + 1
        return reply, []

    async def _replay(self, room: str, since: int, head: int, limit: int | None) -> Replay:
        """Messages after ``since`` up to ``head`` from the stream, and whether that is all."""
        r = self._redis
        # A node that delivered messages locally during an outage marked the
        # offset it resynced at: whoever had seen no later offset may have missed them.
        marker = await r.get(self.keys.gap(room))
        lost_in_outage = marker is not None and since <= int(marker)
        if since >= head:
            return Replay([], since == head and not lost_in_outage, head + 1)
        count = head - since if limit is None else min(limit, head - since)
        async with r.pipeline(transaction=False) as pipe:
            pipe.xrange(self.keys.stream(room), f"{since + 1}-0", f"{head}-0", count=count)
            pipe.xrange(self.keys.stream(room), "-", "+", count=1)
            entries, oldest = await pipe.execute()
        cutoff = (time.time() - self.node.rooms.policy_for(room).history_ttl) * 1000
        fresh = [(i, f) for i, f in entries if int(f[b"t"]) >= cutoff]
        frames = [f[b"f"].decode() for _, f in fresh]
        if fresh:
            first_offset = _entry_offset(fresh[0][0])
        elif oldest and int(oldest[0][1][b"t"]) >= cutoff:
            first_offset = max(_entry_offset(oldest[0][0]), since + 1)
        else:
            first_offset = head + 1
        complete = first_offset == since + 1 and (limit is not None or len(frames) == head - since)
        return Replay(frames, complete and not lost_in_outage, first_offset)

    def joined(self, room: str, conn: Connection, first: bool) -> None:
        st = self._state(room)
        if not st.subscribed:
            st.subscribed = True
            self._enqueue(self._subscribe, st)
        self._enqueue(self._presence_add, room, conn.id)

    def left(self, room: str, conn: Connection, last: bool) -> None:
        self._enqueue(self._presence_remove, room, conn.id)
        if last:
            st = self._rooms.get(room)
            if st is not None and not st.paused:
                self._drop_state(st)
                self._enqueue(self._unsubscribe, st)

    async def _subscribe(self, st: _RoomSync) -> None:
        if self._rooms.get(st.name) is not st or not self._connected:
            return  # gone already, or the next session subscribes it
        pubsub = self._pubsub
        if pubsub is None:
            return
        await self._subscribe_many(pubsub, [st.channel], wait=True)
        await self._sync_room(st, outage=False)

    async def _unsubscribe(self, st: _RoomSync) -> None:
        if self._rooms.get(st.name) is not None or not self._connected:
            return  # joined again meanwhile: keep the subscription
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(st.channel)

    # -- clients ---------------------------------------------------------------------------------

    def client_changed(self, conn: Connection, connected: bool) -> None:
        if connected:
            self._enqueue(self._client_add, conn)
        else:
            self._enqueue(self._client_remove, conn.id)

    async def _client_add(self, conn: Connection) -> None:
        if self._connected and self.node.clients.get(conn.id) is conn:
            await self._registry.client_add(conn)

    async def _client_remove(self, client_id: str) -> None:
        if self._connected and client_id not in self.node.clients:
            await self._registry.client_remove(client_id)

    async def _presence_add(self, room: str, client_id: str) -> None:
        if self._connected:  # else: rewritten on reconnect
            event = self.node.rooms.policy_for(room).presence_events is not False
            await self._registry.presence_add(room, client_id, event=event)

    async def _presence_remove(self, room: str, client_id: str) -> None:
        if self._connected:
            event = self.node.rooms.policy_for(room).presence_events is not False
            await self._registry.presence_remove(room, client_id, event=event)

    async def send(self, client_id: str, frame: Frame) -> bool:
        conn = self.node.clients.get(client_id)
        if conn is not None:
            return conn.send(encode(frame))
        if not self._connected:
            return False
        try:
            target = await self._registry.where(client_id)
            if target is None:
                return False
            channel = self.keys.node_channel(target)
            receivers = await self._redis.publish(channel, f"D\t{client_id}\t{encode(frame)}")
        except _FAILURES as exc:
            self._lost(exc)
            return False
        return bool(receivers)

    def send_nowait(self, client_id: str, frame: Frame) -> None:
        self._enqueue(self.send, client_id, frame)

    async def broadcast(self, frame: Frame) -> int:
        text = encode(frame)
        local = sum(1 for conn in list(self.node.clients.values()) if conn.send(text))
        if not self._connected:
            return local
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.publish(self.keys.broadcast, f"B\t{self.node_id}\t{text}")
                pipe.hlen(self.keys.clients)
                _, total = await pipe.execute()
        except _FAILURES as exc:
            self._lost(exc)
            return local
        return local + max(0, int(total) - len(self.node.clients))

    # -- revocations ---------------------------------------------------------------------------

    async def share_revocation(self, revocation: Revocation) -> bool:
        """Store ``revocation`` with its TTL and tell every node; False if Redis is out
        of reach (it is then written when the connection is back)."""
        if self._connected:
            try:
                await self._revocations.write(revocation)
                return True
            except _FAILURES as exc:
                self._lost(exc)
        self._revocations.unshared.append(revocation)
        return False

    async def _load_revocations(self) -> None:
        """Write what an outage kept back, then honour every revocation in Redis."""
        written = await self._revocations.flush_unshared()
        loaded = await self._revocations.load()
        if self.on_revoke is not None:
            for revocation in loaded:
                self.on_revoke(revocation)
        if written or loaded:
            logger.info("revocations: %d written, %d loaded from redis", written, len(loaded))

    # -- queries --------------------------------------------------------------------------------

    async def history(self, room: str, since: int, limit: int | None = None) -> tuple[int, Replay]:
        local = self.node.rooms.find(room)
        if self._connected:
            try:
                raw = await self._redis.get(self.keys.offset(room))
                if raw is not None:
                    head = int(raw)
                    return head, await self._replay(room, since, head, limit)
            except _FAILURES as exc:
                self._lost(exc)
        if local is None:
            raise NotFound(f"room '{room}' does not exist", room=room)
        return local.offset, Replay([], since >= local.offset, local.offset + 1)

    async def members(self, room: str) -> dict[str, str]:
        local = self.node.rooms.find(room)
        if self._connected:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(self.keys.presence(room))
                    pipe.exists(self.keys.offset(room))
                    found, exists = await pipe.execute()
                if found or exists or local is not None:
                    return {k.decode(): v.decode() for k, v in found.items()}
            except _FAILURES as exc:
                self._lost(exc)
            else:
                raise NotFound(f"room '{room}' does not exist", room=room)
        if local is None:
            raise NotFound(f"room '{room}' does not exist", room=room)
        return dict.fromkeys(local.members, self.node_id)

    # -- the ordered op queue ----------------------------------------------------------------------

    def _enqueue(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._ops.qsize() >= MAX_PENDING_OPS:
            self.dropped_ops += 1
            return
        self._ops.put_nowait((fn, args))

    async def _flush(self) -> None:
        """Wait until every op queued before this call has run."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def mark() -> None:
            if not done.done():
                done.set_result(None)

        self._ops.put_nowait((mark, ()))
        await done

    async def clients(self) -> list[ClientRecord]:
        mine = [
            ClientRecord(
                id=conn.id,
                node=self.node_id,
                kind=conn.kind,
                rooms=tuple(sorted(conn.rooms)),
                connected_at=conn.connected_at,
                peer=None if conn.meta.get("peer") is None else str(conn.meta["peer"]),
                queued=conn.queued,
            )
            for conn in list(self.node.clients.values())
        ]
        if not self._connected:
            return mine
        try:
            return mine + await self._registry.other_clients()
        except _FAILURES as exc:
            self._lost(exc)
            return mine

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node_heartbeat)
            if not self._connected:
                continue
            try:
                await self._registry.heartbeat()
                self.reaped += await self._registry.reap()
            except _FAILURES as exc:
                self._lost(exc)

    async def _op_loop(self) -> None:
        while True:
            fn, args = await self._ops.get()
            try:
                await fn(*args)
            except _FAILURES as exc:
                self._lost(exc)
            except Exception:
                logger.exception("redis broker operation %s failed", fn.__name__)


def _entry_offset(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _exclude(fields: dict[bytes, bytes]) -> str | None:
    value = fields.get(b"x", b"")
    return value.decode() or None


def _safe_url(url: str) -> str:
    """The URL without its password (for logs and errors)."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"

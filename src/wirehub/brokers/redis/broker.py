"""The Redis broker: several hub nodes share offsets, history, presence and clients.

How a message travels (one Lua script, so its steps are atomic and ordered):

1. ``INCR`` the room's offset, ``XADD`` the encoded frame to the room's
   stream (id ``<offset>-0``, trimmed by length and age) and ``PUBLISH`` it on
   the room's channel with the publishing node's id (wire.py).
2. The publishing node applies it to its own members when the script returns;
   every other node subscribed to the room applies it when the channel
   delivers it; each node drops its own echo (socketio's ``host_id`` filter).
3. Each node delivers a room's messages strictly in offset order, once
   (ordering.py decides, this module does the I/O): a message that arrives
   ahead of a missing offset waits (``gap_timeout``), then the missing ones are
   read back from the stream (streams.py); those no longer there become a
   ``gap`` notice to the room's members.

A node subscribes to a room's channel only while the room has local members.
Presence and the client registry are Redis hashes written by their node
(registry.py); each node refreshes a heartbeat deadline in ``P:nodes`` and
removes the members of nodes whose deadline passed (sending their ``leave``
events). Frames reach this node's peers only through its :class:`Local`.

Outage: publishes fall back to this node's members (``offset: null``,
``"local": true``), ``readiness()`` is false, and the session (session.py)
reconnects with :func:`wirehub.backoff.backoff`, resubscribes, rewrites this
node's presence, replays what the stream holds, and sends ``gap`` notices where
messages may be missing (docs/protocol.md, "Distributed mode").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wirehub.brokers.keys import Keys
from wirehub.brokers.redis import streams, wire
from wirehub.brokers.redis.ordering import Decision, Deliver, RoomOrder
from wirehub.brokers.redis.pipeline import Group, ScriptBatcher
from wirehub.brokers.redis.publishing import Publishing
from wirehub.brokers.redis.queries import Queries
from wirehub.brokers.redis.registry import Registry
from wirehub.brokers.redis.revocations import RevocationStore
from wirehub.brokers.redis.scripts import PUBLISH_SCRIPT, SET_MAX_SCRIPT
from wirehub.brokers.redis.session import FAILURES, Session, safe_url
from wirehub.core.history import Replay
from wirehub.core.idempotency import DEFAULT_MAX_KEYS, DEFAULT_WINDOW, KeyTable
from wirehub.core.interfaces import JoinInfo
from wirehub.core.protocol import Frame, encode
from wirehub.core.rooms import MAX_MEMBERS_LISTED
from wirehub.core.tokens import Revocation
from wirehub.errors import NotFound, WirehubError

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.interfaces import Local

__all__ = ["RedisBroker", "RoomSync"]

logger = logging.getLogger("wirehub.broker")

#: Redis connections of one node (commands beyond wait up to ``op_timeout`` for one).
MAX_REDIS_CONNECTIONS = 64


@dataclass(eq=False)
class RoomSync:
    """One room on this node (exists while it has local members): order + I/O state."""

    name: str
    channel: str
    order: RoomOrder
    subscribed: bool = False
    ready: asyncio.Future[None] | None = None
    #: The scheduled call for ``order.deadline``.
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    #: ``delivered`` when the broker was lost (None: connected since the last sync).
    outage_offset: int | None = None
    #: The room's outage marker as this node last knew it (``P:room:R:gap``): a
    #: higher one after a reconnect means some node delivered messages locally.
    marker: int = 0
    #: What each publish to the room sends the script (publishing.py ``_room_args``).
    publish_args: Group | None = field(default=None, repr=False)


class RedisBroker(Publishing, Queries, Session):
    """A :class:`wirehub.core.interfaces.Broker` over one Redis server."""

    name = "redis"
    #: Descriptive only (several processes share this broker): nothing branches on it.
    distributed = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wirehub",
        node_heartbeat: float = 2.0,
        node_ttl: float = 10.0,
        gap_timeout: float = 1.0,
        op_timeout: float = 5.0,
        reconnect_cap: float = 10.0,
        idempotency_window: float = DEFAULT_WINDOW,
        idempotency_max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.node_heartbeat = node_heartbeat
        self.node_ttl = node_ttl
        self.gap_timeout = gap_timeout
        self.op_timeout = op_timeout
        self.reconnect_cap = reconnect_cap
        #: Idempotency keys live in Redis (``P:idem:*``, checked by the publish
        #: script); this table only covers publishes made while Redis is out of reach.
        self.idempotency = KeyTable(window=idempotency_window, max_keys=idempotency_max_keys)
        self._idem_ms = max(1, int(idempotency_window * 1000))
        # No hidden retries: a lost connection must surface here, so that the
        # resubscribe and resync happen (a silent reconnect loses messages).
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
        #: The publish script, batched: the publishes of one loop pass share one call.
        self._publish = ScriptBatcher(
            self._redis.register_script(PUBLISH_SCRIPT), lambda: [self.node_id]
        )
        self._set_max = self._redis.register_script(SET_MAX_SCRIPT)
        self._rooms: dict[str, RoomSync] = {}
        self._by_channel: dict[bytes, RoomSync] = {}
        self._local_only: set[str] = set()
        self._ops = self._new_op_pump()
        self._tasks: list[asyncio.Task[None]] = []
        self._init_session()
        self._local: Local | None = None
        self.node_id = ""
        #: Called with every revocation of another node (and all of them, loaded
        #: from Redis, when a session starts): the token lifecycle applies it here.
        self.on_revoke: Callable[[Revocation], None] | None = None
        # Counters (stats, shutdown summary).
        self.outages = 0
        self.gaps = 0
        self.dropped_ops = 0
        self.reaped = 0
        self.duplicates = 0

    def bind(self, local: Local) -> None:
        self._local = local
        self.node_id = local.node_id
        self._channels = [self.keys.node_channel(self.node_id), self.keys.broadcast]
        self._registry = Registry(self._redis, self.keys, local, node_ttl=self.node_ttl)
        self._revocations = RevocationStore(
            self._redis, self.prefix, channel=self.keys.broadcast, node_id=self.node_id
        )

    @property
    def local(self) -> Local:
        if self._local is None:
            raise RuntimeError("the broker is not bound to a node (Node.use_broker)")
        return self._local

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.local  # noqa: B018 - bound before it starts
        self._tasks = [
            loop.create_task(self._run(), name="wirehub-redis-session"),
            loop.create_task(self._heartbeat_loop(), name="wirehub-redis-heartbeat"),
        ]
        self._ops.start()
        try:
            await asyncio.wait_for(self._started.wait(), self.op_timeout)
        except TimeoutError:
            await self.stop()
            raise WirehubError(f"cannot reach Redis at {safe_url(self.url)}") from None

    async def stop(self) -> None:
        """Flush queued writes, take this node out of Redis, close; idempotent."""
        if not self._tasks:
            return
        # 1. Let queued presence/registry writes (the clients' leaves) go out.
        if self._connected:
            with contextlib.suppress(*FAILURES):
                await asyncio.wait_for(self._flush(), self.op_timeout)
        # 2. Stop the loops.
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._ops.close()
        # 3. Remove what this node registered (members left already, above).
        if self._connected:
            with contextlib.suppress(*FAILURES):
                await self._registry.deregister()
        self._connected = False
        for st in self._rooms.values():
            if st.timer is not None:
                st.timer.cancel()
        with contextlib.suppress(*FAILURES):
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

    # -- session hooks (session.py) ------------------------------------------------

    async def _on_session(self, first: bool) -> None:
        await self._registry.register()
        await self._load_revocations()
        for st in list(self._rooms.values()):
            if self._rooms.get(st.name) is st:
                await self._sync_room(st, outage=not first)
        self._local_only.clear()

    def _on_lost(self) -> None:
        for st in self._rooms.values():
            delivered = st.order.lost()
            if st.outage_offset is None:
                st.outage_offset = delivered

    # -- inbound pub/sub ---------------------------------------------------------------

    def _on_message(self, message: dict[str, Any]) -> None:
        msg = wire.decode(message["data"])
        kind, local = msg.kind, self.local
        if kind == "Z":
            st = self._by_channel.get(message["channel"])
            if st is not None and msg.node != self.node_id:  # our own: applied already
                for exclude, offset, frame in wire.records(msg.body):
                    self._apply(st, offset, frame, exclude)
        elif kind == "P":
            st = self._by_channel.get(message["channel"])
            if st is None or msg.node == self.node_id:
                return
            room = local.local_room(st.name)
            if room is not None and room.presence_events():
                local.deliver_event(st.name, msg.frame)
        elif kind == "G":
            st = self._by_channel.get(message["channel"])
            if st is not None and msg.node != self.node_id:
                st.marker = max(st.marker, msg.marker)
                self.gaps += 1
                local.deliver_event(st.name, msg.frame)
        elif kind == "D":
            local.deliver_to(msg.client, msg.frame)
        elif kind == "K":
            local.kick(msg.client)
        elif kind == "R":
            if msg.node != self.node_id and self.on_revoke is not None:
                self.on_revoke(self._revocations.parse(msg.body))
        elif kind == "B" and msg.node != self.node_id:
            local.deliver_all(msg.frame)

    # -- ordered delivery (the decisions are ordering.py's) ----------------------------

    def _apply(self, st: RoomSync, offset: int, frame: str, exclude: str | None) -> None:
        self._decide(st, st.order.offer(offset, frame, exclude, time.monotonic()))

    def _decide(self, st: RoomSync, decisions: list[Decision]) -> None:
        """Carry out what the room's order decided, and schedule its deadline."""
        deliver = self.local.deliver
        for d in decisions:
            if type(d) is Deliver:
                deliver(st.name, d.frame, d.offset, d.exclude)
            else:
                self._gap(st, d.first, d.last, d.reason)  # type: ignore[union-attr]
        deadline = st.order.deadline
        if deadline is not None and st.timer is None:
            st.timer = asyncio.get_running_loop().call_later(
                max(0.0, deadline - time.monotonic()), self._gap_due, st
            )

    def _gap_due(self, st: RoomSync) -> None:
        st.timer = None
        missing = st.order.expire()
        if missing is not None and self._rooms.get(st.name) is st and self._connected:
            self._enqueue(self._fill, st)

    async def _fill(self, st: RoomSync) -> None:
        """Read the offsets missing before the pending ones back from the stream."""
        missing = st.order.missing()
        if missing is None:
            return
        await self._catch_up(st, missing[1])
        self._decide(st, st.order.drain(time.monotonic()))

    async def _catch_up(self, st: RoomSync, upto: int) -> None:
        """Deliver offsets ``delivered+1..upto`` from the stream; a ``gap`` for the rest."""
        assert st.order.delivered is not None
        start = st.order.delivered + 1
        if upto < start:
            return
        entries = await streams.read_range(self._redis, self.keys, st.name, start, upto)
        self._decide(st, st.order.fill(entries, upto))

    def _gap(self, st: RoomSync, first: int, last: int | None, reason: str) -> None:
        self.gaps += 1
        frame: Frame = {"type": "gap", "room": st.name, "reason": reason}
        if last is not None:
            frame["from_offset"], frame["to_offset"] = first, last
        logger.warning("room %s: gap (%s) %s..%s", st.name, reason, first, last)
        self.local.deliver_event(st.name, encode(frame))

    async def _sync_room(self, st: RoomSync, *, outage: bool) -> None:
        """Align ``st`` with Redis (first subscribe or after a reconnect), then release it."""
        r = self._redis
        current = int(await r.get(self.keys.offset(st.name)) or 0)
        action, decisions = st.order.resync(current)
        if action == "reset":
            # Redis lost its data: keep offsets growing and say so.
            await self._set_max(keys=[self.keys.offset(st.name)], args=[st.order.delivered])
            self._decide(st, decisions)
        elif action == "catch_up":
            await self._catch_up(st, current)
        delivered = st.order.delivered or 0
        marker = int(await r.get(self.keys.gap(st.name)) or 0)
        if outage and st.outage_offset is not None and marker > st.marker:
            # Another node delivered messages locally while we were cut off.
            self._gap(st, st.outage_offset + 1, None, "broker_outage")
        if outage and st.name in self._local_only:
            # Our members saw messages no other node got: mark the room, tell the others.
            marker = max(marker, current, delivered)
            gap = encode(
                {"type": "gap", "room": st.name, "offset": marker, "reason": "broker_outage"}
            )
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.gap(st.name), marker)
                pipe.pexpire(self.keys.gap(st.name), self._ttl_ms(st.name))
                pipe.publish(st.channel, wire.gap(self.node_id, marker, gap))
                await pipe.execute()
        st.marker = max(st.marker, marker)
        st.outage_offset = None
        decisions = st.order.synced_now(time.monotonic())
        if st.ready is not None and not st.ready.done():
            st.ready.set_result(None)
        self._decide(st, decisions)

    # -- publishing --------------------------------------------------------------------------

    # -- joining and membership ----------------------------------------------------------------

    def _state(self, room: str) -> RoomSync:
        st = self._rooms.get(room)
        if st is None:
            channel = self.keys.room_channel(room)
            ready = asyncio.get_running_loop().create_future()
            st = RoomSync(room, channel, RoomOrder(gap_timeout=self.gap_timeout), ready=ready)
            self._rooms[room] = st
            self._by_channel[channel.encode()] = st
        return st

    def _drop_state(self, st: RoomSync) -> None:
        if self._rooms.get(st.name) is st:
            del self._rooms[st.name]
            self._by_channel.pop(st.channel.encode(), None)
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None

    async def join(
        self, conn: Connection, room: str, since: int | None, answer: Callable[[JoinInfo], None]
    ) -> None:
        st = self._state(room)
        st.order.hold()
        try:
            info = None
            if self._connected:
                try:
                    assert st.ready is not None
                    await asyncio.wait_for(asyncio.shield(st.ready), self.op_timeout)
                    await asyncio.wait_for(self._flush(), self.op_timeout)
                    info = await self._joined(st, since)
                except FAILURES as exc:
                    if not isinstance(exc, TimeoutError):
                        self._lost(exc)
            # joined, then the replay, then (below, on release) live messages.
            answer(info if info is not None else self._joined_locally(st, since))
        finally:
            self._decide(st, st.order.release(time.monotonic()))

    async def _joined(self, st: RoomSync, since: int | None) -> JoinInfo:
        head = st.order.delivered or 0
        key = self.keys.presence(st.name)
        # The member list only where presence is on (as on one node): reading a
        # big room's whole presence hash on every join is O(members) per join,
        # O(N²) for N clients (re)joining at once.
        local = self.local.local_room(st.name)
        if local is not None and local.presence_events():
            names = [m.decode() for m in await self._redis.hkeys(key)]
            info = JoinInfo(st.name, head, len(names), names[:MAX_MEMBERS_LISTED])
        else:
            info = JoinInfo(st.name, head, int(await self._redis.hlen(key)))
        if since is not None:
            info.replay = await self._replay(st.name, since, head, None)
        return info

    def _joined_locally(self, st: RoomSync, since: int | None) -> JoinInfo:
        room = self.local.local_room(st.name)
        if room is None:
            raise NotFound(f"room '{st.name}' does not exist", room=st.name)
        delivered = st.order.delivered
        head = delivered if delivered is not None else room.offset
        members = list(room.members)
        info = JoinInfo(st.name, head, len(members), members[:MAX_MEMBERS_LISTED])
        if since is not None:
            # History is in Redis, out of reach: only "nothing missed" is certain.
            info.replay = Replay([], False, head + 1)
        return info

    async def _replay(self, room: str, since: int, head: int, limit: int | None) -> Replay:
        ttl = self.local.policy_for(room).history_ttl
        return await streams.replay(self._redis, self.keys, room, since, head, limit, ttl)

    def joined(self, room: str, conn: Connection, first: bool) -> None:
        st = self._state(room)
        if not st.subscribed:
            st.subscribed = True
            self._enqueue(self._subscribe, st)
        self._enqueue(self._presence_add, room, conn.id, conn.kind)

    def left(self, room: str, conn: Connection, last: bool) -> None:
        self._enqueue(self._presence_remove, room, conn.id, conn.kind)
        if last:
            st = self._rooms.get(room)
            if st is not None and not st.order.paused:
                self._drop_state(st)
                self._enqueue(self._unsubscribe, st)

    async def _subscribe(self, st: RoomSync) -> None:
        if self._rooms.get(st.name) is not st or not self._connected:
            return  # gone already, or the next session subscribes it
        pubsub = self._pubsub
        if pubsub is None:
            return
        await self._subscribe_many(pubsub, [st.channel], wait=True)
        await self._sync_room(st, outage=False)

    async def _unsubscribe(self, st: RoomSync) -> None:
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
        if self._connected and self.local.local_client(conn.id) is conn:
            await self._registry.client_add(conn)

    async def _client_remove(self, client_id: str) -> None:
        if self._connected and self.local.local_client(client_id) is None:
            await self._registry.client_remove(client_id)

    async def _presence_add(self, room: str, client_id: str, kind: str | None = None) -> None:
        if self._connected:  # else: rewritten on reconnect
            event = self.local.policy_for(room).presence_events is not False
            await self._registry.presence_add(room, client_id, event=event, kind=kind)

    async def _presence_remove(self, room: str, client_id: str, kind: str | None = None) -> None:
        if self._connected:
            event = self.local.policy_for(room).presence_events is not False
            await self._registry.presence_remove(room, client_id, event=event, kind=kind)

    async def send(self, client_id: str, frame: Frame) -> bool:
        if self.local.local_client(client_id) is not None:
            return self.local.deliver_to(client_id, encode(frame))
        if not self._connected:
            return False
        try:
            target = await self._registry.where(client_id)
            if target is None:
                return False
            channel = self.keys.node_channel(target)
            receivers = await self._redis.publish(channel, wire.direct(client_id, encode(frame)))
        except FAILURES as exc:
            self._lost(exc)
            return False
        return bool(receivers)

    def send_nowait(self, client_id: str, frame: Frame) -> bool:
        self._enqueue(self.send, client_id, frame)
        return True

    async def broadcast(self, frame: Frame) -> int:
        text = encode(frame)
        local = self.local.deliver_all(text)
        if not self._connected:
            return local
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.publish(self.keys.broadcast, wire.broadcast(self.node_id, text))
                pipe.hlen(self.keys.clients)
                _, total = await pipe.execute()
        except FAILURES as exc:
            self._lost(exc)
            return local
        return local + max(0, int(total) - len(self.local.local_clients()))

    # -- revocations ---------------------------------------------------------------------------

    async def share_revocation(self, revocation: Revocation) -> bool:
        """Store ``revocation`` with its TTL and tell every node; False if Redis is out
        of reach (it is then written when the connection is back)."""
        if self._connected:
            try:
                await self._revocations.write(revocation)
                return True
            except FAILURES as exc:
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

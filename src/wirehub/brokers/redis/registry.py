"""This node's entries in the shared registry: presence, clients, heartbeats, dead nodes.

Every node writes only its own entries (hash fields naming it) and removes
them with a compare-and-delete, so a client that moved to another node is
never removed by the node it left. A node refreshes its heartbeat deadline in
``P:nodes``; any node that finds a deadline passed claims that node (``ZREM``
returns 1 to one claimant only), removes its members and clients, and
publishes the ``leave`` events its members' rooms would have had.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from wirehub.brokers.keys import Keys
from wirehub.brokers.redis import wire
from wirehub.brokers.redis.scripts import DELETE_IF_SCRIPT
from wirehub.core.interfaces import ClientRecord
from wirehub.core.rooms import presence_frame

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.interfaces import Local

__all__ = ["Registry"]

logger = logging.getLogger("wirehub.broker")


class Registry:
    """Reads and writes of one node's presence and client records (callers handle outages)."""

    def __init__(self, redis: Any, keys: Keys, local: Local, *, node_ttl: float) -> None:
        self.redis = redis
        self.keys = keys
        self.local = local
        self.node_id = local.node_id
        self._node_b = self.node_id.encode()
        self.node_ttl = node_ttl
        self._delete_if = redis.register_script(DELETE_IF_SCRIPT)

    # -- presence ------------------------------------------------------------

    async def presence_add(
        self, room: str, client_id: str, *, event: bool, kind: str | None = None
    ) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.presence(room), client_id, self.node_id)
            pipe.sadd(self.keys.node_presence(self.node_id), f"{room}\t{client_id}")
            if event:
                frame = presence_frame(room, "join", client_id, kind)
                pipe.publish(self.keys.room_channel(room), wire.presence(self.node_id, frame))
            await pipe.execute()

    async def presence_remove(
        self, room: str, client_id: str, *, event: bool, kind: str | None = None
    ) -> None:
        removed = await self._delete_if(
            keys=[self.keys.presence(room)], args=[client_id, self.node_id]
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(self.keys.node_presence(self.node_id), f"{room}\t{client_id}")
            if removed and event:
                frame = presence_frame(room, "leave", client_id, kind)
                pipe.publish(self.keys.room_channel(room), wire.presence(self.node_id, frame))
            await pipe.execute()

    # -- clients ---------------------------------------------------------------

    @staticmethod
    def client_record(conn: Connection) -> bytes:
        peer = conn.meta.get("peer")
        return orjson.dumps(
            {"kind": conn.kind, "at": conn.connected_at, "peer": None if peer is None else peer}
        )

    async def client_add(self, conn: Connection) -> None:
        r = self.redis
        previous = await r.hget(self.keys.clients, conn.id)
        async with r.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.clients, conn.id, self.node_id)
            pipe.hset(self.keys.node_clients(self.node_id), conn.id, self.client_record(conn))
            if previous is not None and previous != self._node_b:
                # Same client_id connected elsewhere before: that node closes it (4409).
                pipe.publish(self.keys.node_channel(previous.decode()), wire.kick(conn.id))
            await pipe.execute()

    async def client_remove(self, client_id: str) -> None:
        await self._delete_if(keys=[self.keys.clients], args=[client_id, self.node_id])
        await self.redis.hdel(self.keys.node_clients(self.node_id), client_id)

    async def where(self, client_id: str) -> str | None:
        """The node a client is connected to, if any."""
        node = await self.redis.hget(self.keys.clients, client_id)
        return None if node is None else node.decode()

    async def other_clients(self) -> list[ClientRecord]:
        """The clients of every other live node (with the rooms they are in)."""
        nodes = [n.decode() for n in await self.redis.zrange(self.keys.nodes, 0, -1)]
        others = [n for n in nodes if n != self.node_id]
        async with self.redis.pipeline(transaction=False) as pipe:
            for other in others:
                pipe.hgetall(self.keys.node_clients(other))
                pipe.smembers(self.keys.node_presence(other))
            results = await pipe.execute()
        found: list[ClientRecord] = []
        for i, other in enumerate(others):
            records, pairs = results[2 * i], results[2 * i + 1]
            rooms: dict[str, list[str]] = {}
            for pair in pairs:
                room, _, client = pair.decode().partition("\t")
                rooms.setdefault(client, []).append(room)
            for client_id, raw in records.items():
                info = orjson.loads(raw)
                cid = client_id.decode()
                found.append(
                    ClientRecord(
                        id=cid,
                        node=other,
                        kind=str(info.get("kind", "?")),
                        rooms=tuple(sorted(rooms.get(cid, ()))),
                        connected_at=float(info.get("at", 0.0)),
                        peer=info.get("peer"),
                    )
                )
        return found

    # -- this node ---------------------------------------------------------------

    async def register(self) -> None:
        """Write this node's whole state (after a (re)connect, or after being reaped)."""
        node, keys = self.node_id, self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.node_presence(node), keys.node_clients(node))
            for room in self.local.local_rooms():
                if not room.members:
                    continue
                pipe.hset(keys.presence(room.name), mapping=dict.fromkeys(room.members, node))
                pipe.sadd(keys.node_presence(node), *[f"{room.name}\t{c}" for c in room.members])
            for conn in self.local.local_clients():
                pipe.hset(keys.clients, conn.id, node)
                pipe.hset(keys.node_clients(node), conn.id, self.client_record(conn))
            pipe.zadd(keys.nodes, {node: self._deadline()})
            await pipe.execute()

    async def deregister(self) -> None:
        node, keys = self.node_id, self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.nodes, node)
            pipe.delete(keys.node_presence(node), keys.node_clients(node))
            await pipe.execute()

    def _deadline(self) -> int:
        return int((time.time() + self.node_ttl) * 1000)

    async def heartbeat(self) -> None:
        """Push this node's deadline; write everything again if it had been reaped."""
        added = await self.redis.zadd(self.keys.nodes, {self.node_id: self._deadline()})
        if added:
            logger.warning("node %s was presumed dead; registering again", self.node_id)
            await self.register()

    async def reap(self) -> int:
        """Remove the members and clients of nodes whose deadline passed; returns how many."""
        r, keys = self.redis, self.keys
        now = int(time.time() * 1000)
        reaped = 0
        for raw in await r.zrangebyscore(keys.nodes, "-inf", now):
            dead = raw.decode()
            if dead == self.node_id or not await r.zrem(keys.nodes, dead):
                continue  # another node claimed it
            reaped += 1
            left = 0
            for pair in await r.smembers(keys.node_presence(dead)):
                room, _, client = pair.decode().partition("\t")
                if await self._delete_if(keys=[keys.presence(room)], args=[client, dead]):
                    left += 1
                    frame = presence_frame(room, "leave", client)
                    await r.publish(keys.room_channel(room), wire.presence("", frame))
            for client in await r.hkeys(keys.node_clients(dead)):
                await self._delete_if(keys=[keys.clients], args=[client, dead])
            await r.delete(keys.node_presence(dead), keys.node_clients(dead))
            logger.info("node %s expired: removed %d room members", dead, left)
        return reaped

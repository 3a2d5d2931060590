"""Revocations shared through Redis: a key with a TTL each, and a notice to every node.

=========================  =======  ===================================================
name                       type     holds
=========================  =======  ===================================================
``P:revoked:jti:<jti>``    string   JSON revocation; expires at its ``until``
``P:revoked:sub:<sub>``    string   JSON revocation (with ``before``); expires the same
``P:broadcast``            channel  the notice ``R\t<node>\t<json>``: every node closes
                                    what it names and refuses it from then on
=========================  =======  ===================================================

The key is the durable part: a node that starts (or reconnects after an outage,
when it may have missed the notice) loads every key and honours them, so a
revoked token stays refused on every node until it would have expired anyway.
A revocation that could not be written (Redis unreachable) is kept and written
by the next session.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from wirehub.brokers.redis import wire
from wirehub.core.tokens import Revocation

__all__ = ["RevocationStore"]

logger = logging.getLogger("wirehub.broker")

#: Keys read per round trip when loading.
_BATCH = 500


class RevocationStore:
    """Writes and loads ``P:revoked:*`` keys; the broker publishes and applies notices."""

    def __init__(self, redis: Any, prefix: str, *, channel: str, node_id: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.channel = channel
        self.node_id = node_id
        #: Revocations not yet in Redis (written by the next session).
        self.unshared: list[Revocation] = []

    def key(self, revocation: Revocation) -> str:
        return f"{self.prefix}:revoked:{revocation.kind}:{revocation.value}"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}:revoked:*"

    def notice(self, revocation: Revocation) -> bytes:
        return wire.revocation(self.node_id, orjson.dumps(revocation.to_dict()))

    async def write(self, revocation: Revocation) -> None:
        """Store the key (TTL until ``until``) and tell every node; raises on a Redis failure."""
        ttl_ms = int((revocation.until - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key(revocation), orjson.dumps(revocation.to_dict()), px=ttl_ms)
            pipe.publish(self.channel, self.notice(revocation))
            await pipe.execute()

    async def flush_unshared(self) -> int:
        """Write what an outage kept back; returns how many went out."""
        pending, self.unshared = self.unshared, []
        for i, revocation in enumerate(pending):
            try:
                await self.write(revocation)
            except BaseException:
                self.unshared = pending[i:] + self.unshared
                raise
        return len(pending)

    async def load(self) -> list[Revocation]:
        """Every revocation still in Redis."""
        found: list[Revocation] = []
        keys: list[bytes] = []
        async for key in self.redis.scan_iter(match=self.pattern, count=_BATCH):
            keys.append(key)
            if len(keys) >= _BATCH:
                found += await self._read(keys)
                keys = []
        if keys:
            found += await self._read(keys)
        return found

    async def _read(self, keys: list[bytes]) -> list[Revocation]:
        found = []
        for raw in await self.redis.mget(keys):
            if raw is None:
                continue  # expired between SCAN and MGET
            try:
                found.append(Revocation.from_dict(orjson.loads(raw)))
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring a malformed revocation in Redis: %r", raw[:200])
        return found

    @staticmethod
    def parse(body: bytes) -> Revocation:
        """The revocation of a notice's body (``wire.decode(...).body``)."""
        return Revocation.from_dict(orjson.loads(body))

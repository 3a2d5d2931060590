"""What the Redis broker answers about every node: history, members, clients.

Read-only views, each with the same meaning as the memory broker's, that fall
back to this node's own view while Redis is out of reach (a base class of
:class:`~wirehub.brokers.redis.broker.RedisBroker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wirehub.brokers.keys import Keys
from wirehub.brokers.memory import client_record
from wirehub.brokers.redis.session import FAILURES
from wirehub.core.history import Replay
from wirehub.core.interfaces import ClientRecord
from wirehub.errors import NotFound

if TYPE_CHECKING:
    from wirehub.brokers.redis.registry import Registry
    from wirehub.core.interfaces import Local

__all__ = ["Queries"]


class Queries:
    """history / members / clients / client of the Broker seam, over Redis."""

    node_id: str
    keys: Keys
    _redis: Any
    _registry: Registry
    _connected: bool

    if TYPE_CHECKING:  # provided by RedisBroker and Session

        @property
        def local(self) -> Local: ...

        def _lost(self, exc: BaseException) -> None: ...

        async def _replay(self, room: str, since: int, head: int, limit: int | None) -> Replay: ...

    async def history(self, room: str, since: int, limit: int | None = None) -> tuple[int, Replay]:
        local = self.local.local_room(room)
        if self._connected:
            try:
                raw = await self._redis.get(self.keys.offset(room))
                if raw is not None:
                    head = int(raw)
                    return head, await self._replay(room, since, head, limit)
            except FAILURES as exc:
                self._lost(exc)
        if local is None:
            raise NotFound(f"room '{room}' does not exist", room=room)
        return local.offset, Replay([], since >= local.offset, local.offset + 1)

    async def members(self, room: str) -> dict[str, str]:
        local = self.local.local_room(room)
        if self._connected:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(self.keys.presence(room))
                    pipe.exists(self.keys.offset(room))
                    found, exists = await pipe.execute()
                if found or exists or local is not None:
                    return {k.decode(): v.decode() for k, v in found.items()}
            except FAILURES as exc:
                self._lost(exc)
            else:
                raise NotFound(f"room '{room}' does not exist", room=room)
        if local is None:
            raise NotFound(f"room '{room}' does not exist", room=room)
        return dict.fromkeys(local.members, self.node_id)

    async def clients(
        self, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[ClientRecord]]:
        records = [client_record(conn, self.node_id) for conn in self.local.local_clients()]
        if self._connected:
            try:
                records += await self._registry.other_clients()
            except FAILURES as exc:
                self._lost(exc)
        end = None if limit is None else offset + limit
        return len(records), records[offset:end]

    async def client(self, client_id: str) -> ClientRecord | None:
        conn = self.local.local_client(client_id)
        if conn is not None:
            return client_record(conn, self.node_id)
        if not self._connected:
            return None
        try:
            others = await self._registry.other_clients()
        except FAILURES as exc:
            self._lost(exc)
            return None
        return next((r for r in others if r.id == client_id), None)

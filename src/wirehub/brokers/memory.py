"""The in-process broker: the reference implementation of ``Broker``.

Everything already lives in this process's :class:`RoomRegistry`, so each
method is a thin view of it. The node never calls it per message
(``distributed = False``): publish, join and direct keep their synchronous
fast path; the HTTP API and the tests use this async surface, which a
distributed broker implements with the same meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wirehub.core.interfaces import ClientRecord
from wirehub.core.protocol import Frame

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.node import Node
    from wirehub.core.rooms import Replay

__all__ = ["MemoryBroker"]


class MemoryBroker:
    """One node is the whole hub: offsets, history and presence are local."""

    name = "memory"
    distributed = False

    def __init__(self, node: Node) -> None:
        self.node = node

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def readiness(self) -> dict[str, bool]:
        return {}

    # -- membership (the node never attaches us as observer) -------------------

    def joined(self, room: str, conn: Connection, first: bool) -> None:
        return None

    def left(self, room: str, conn: Connection, last: bool) -> None:
        return None

    def client_changed(self, conn: Connection, connected: bool) -> None:
        return None

    # -- messages ------------------------------------------------------------

    async def publish(self, room: str, sender: str, data: Any, *, exclude: str | None) -> int:
        return self.node.publish(room, sender, data, exclude=exclude)

    def publish_nowait(self, room: str, sender: str, data: Any, *, exclude: str | None) -> None:
        self.node.publish(room, sender, data, exclude=exclude)

    async def join(
        self, conn: Connection, room: str, since: int | None, ref: Any = None
    ) -> Frame | None:
        return self.node.join_local(conn, room, since, ref)

    async def history(self, room: str, since: int, limit: int | None = None) -> tuple[int, Replay]:
        target = self.node.rooms.get(room)
        replay = target.history.since(since)
        if limit is not None:
            replay.frames = replay.frames[:limit]
        return target.offset, replay

    async def members(self, room: str) -> dict[str, str]:
        node_id = self.node.node_id
        return dict.fromkeys(self.node.rooms.get(room).members, node_id)

    async def send(self, client_id: str, frame: Frame) -> bool:
        return self.node.send_frame(client_id, frame)

    def send_nowait(self, client_id: str, frame: Frame) -> None:
        self.node.send_frame(client_id, frame)

    async def broadcast(self, frame: Frame) -> int:
        return self.node.broadcast(frame)

    async def clients(self) -> list[ClientRecord]:
        node_id = self.node.node_id
        return [
            ClientRecord(
                id=conn.id,
                node=node_id,
                kind=conn.kind,
                rooms=tuple(sorted(conn.rooms)),
                connected_at=conn.connected_at,
                peer=_str_or_none(conn.meta.get("peer")),
                queued=conn.queued,
            )
            for conn in list(self.node.clients.values())
        ]


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)

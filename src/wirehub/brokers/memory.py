"""The in-process broker: the reference implementation of ``Broker``, and the hot path.

One node is the whole hub, so the node's own room table is the shared state:
a publish takes the room's next offset and keeps the frame in the room's
history ring (:meth:`Local.sequence`), then hands the encoded frame to the
delivery callback (:meth:`Local.deliver`), which fans it out without an await.
A distributed broker implements each method with the same meaning, over the
network; the tests run the same suite against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from wirehub.core.idempotency import DEFAULT_MAX_KEYS, DEFAULT_WINDOW, KeyTable
from wirehub.core.interfaces import ClientRecord, JoinInfo
from wirehub.core.protocol import Frame, encode
from wirehub.core.rooms import MAX_MEMBERS_LISTED
from wirehub.errors import NotFound

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.history import Replay
    from wirehub.core.interfaces import Local
    from wirehub.core.rooms import Room

__all__ = ["MemoryBroker", "client_record"]


class MemoryBroker:
    """Offsets, history and presence of one process, kept in its room table."""

    name = "memory"
    #: Descriptive only (several processes share this broker): nothing branches on it.
    distributed = False

    def __init__(
        self,
        *,
        idempotency_window: float = DEFAULT_WINDOW,
        idempotency_max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self._local: Local | None = None
        #: Idempotency keys of recent publishes (bounded: ``core.idempotency``).
        self.idempotency = KeyTable(window=idempotency_window, max_keys=idempotency_max_keys)
        #: Publishes not delivered again because their key was seen in the window.
        self.duplicates = 0

    @property
    def local(self) -> Local:
        if self._local is None:
            raise RuntimeError("the broker is not bound to a node (Node.use_broker)")
        return self._local

    def bind(self, local: Local) -> None:
        self._local = local

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def readiness(self) -> dict[str, bool]:
        return {}

    # -- membership: all local, nothing to share --------------------------------

    def joined(self, room: str, conn: Connection, first: bool) -> None:
        return None

    def left(self, room: str, conn: Connection, last: bool) -> None:
        return None

    def client_changed(self, conn: Connection, connected: bool) -> None:
        return None

    # -- messages ------------------------------------------------------------

    async def publish(
        self,
        room: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None,
        idempotency_key: str | None = None,
    ) -> int:
        result: list[int | BaseException] = []
        self.publish_soon(
            room, sender, data, exclude=exclude, idempotency_key=idempotency_key, done=result.append
        )
        return cast(int, result[0])  # publish_soon calls done before it returns

    def publish_soon(
        self,
        room: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None,
        idempotency_key: str | None = None,
        done: Callable[[int | BaseException], None],
    ) -> None:
        # Check, sequence and remember without an await (one step, no race);
        # done before this returns.
        first = None if idempotency_key is None else self.idempotency.get(room, idempotency_key)
        if first is not None:
            self.duplicates += 1
            done(first)
            return
        offset = self.publish_nowait(room, sender, data, exclude=exclude)
        if idempotency_key is not None:
            self.idempotency.put(room, idempotency_key, offset)
        done(offset)

    def publish_nowait(self, room: str, sender: str, data: Any, *, exclude: str | None) -> int:
        local = self.local
        offset, frame = local.sequence(room, sender, data)
        local.deliver(room, frame, offset, exclude)
        return offset

    async def join(
        self, conn: Connection, room: str, since: int | None, answer: Callable[[JoinInfo], None]
    ) -> None:
        target = self._room(room)
        info = JoinInfo(room, target.offset, len(target.members))
        # The member list only where presence is on: in a big broadcast room a
        # list per join is work (and memory) proportional to the room's size.
        if target.presence_events():
            info.members = list(islice(target.members, MAX_MEMBERS_LISTED))
        if since is not None:
            info.replay = target.history.since(since)
        # Nothing can be delivered between the join and this call (no await):
        # joined, then the replay, then live messages.
        answer(info)

    async def history(self, room: str, since: int, limit: int | None = None) -> tuple[int, Replay]:
        target = self._room(room)
        replay = target.history.since(since)
        if limit is not None:
            replay.frames = replay.frames[:limit]
        return target.offset, replay

    async def members(self, room: str) -> Mapping[str, str]:
        return _Members(self._room(room).members, self.local.node_id)

    async def send(self, client_id: str, frame: Frame) -> bool:
        return self.local.deliver_to(client_id, encode(frame))

    def send_nowait(self, client_id: str, frame: Frame) -> bool:
        return False  # not on this node: on no node

    async def broadcast(self, frame: Frame) -> int:
        return self.local.deliver_all(encode(frame))

    async def clients(
        self, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[ClientRecord]]:
        conns = self.local.local_clients()
        end = None if limit is None else offset + limit
        node_id = self.local.node_id
        return len(conns), [client_record(c, node_id) for c in conns[offset:end]]

    async def client(self, client_id: str) -> ClientRecord | None:
        conn = self.local.local_client(client_id)
        return None if conn is None else client_record(conn, self.local.node_id)

    def _room(self, name: str) -> Room:
        # The reference broker keeps its state in the core's room objects.
        room = self.local.local_room(name)
        if room is None:
            raise NotFound(f"room '{name}' does not exist", room=name)
        return cast("Room", room)


class _Members(Mapping[str, str]):
    """client id → node id over a room's member table, without copying it."""

    __slots__ = ("_members", "_node")

    def __init__(self, members: Mapping[str, object], node: str) -> None:
        self._members = members
        self._node = node

    def __getitem__(self, key: str) -> str:
        if key not in self._members:
            raise KeyError(key)
        return self._node

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)


def client_record(conn: Connection, node_id: str) -> ClientRecord:
    """A client of this node as every node sees it (with its queue, known here only)."""
    peer = conn.meta.get("peer")
    return ClientRecord(
        id=conn.id,
        node=node_id,
        kind=conn.kind,
        rooms=tuple(sorted(conn.rooms)),
        connected_at=conn.connected_at,
        peer=None if peer is None else str(peer),
        queued=conn.queued,
    )

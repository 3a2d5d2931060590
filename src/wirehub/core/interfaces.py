"""The typing.Protocols the core needs from the parts the hub plugs into it.

:class:`Broker` is what makes several hub processes behave as one: it owns
what a single node cannot know alone (offsets, history, presence, where a
client is connected). ``wirehub.brokers.memory`` is the reference (one
process); ``wirehub.brokers.redis`` shares everything through Redis.

The in-memory broker is ``distributed = False``: the node then keeps its
synchronous fast path (publish encodes once and fans out without an await)
and never calls the broker per message. A distributed broker gets the async
paths: it sequences each publish, then hands the encoded frame back to every
node's :meth:`wirehub.core.rooms.RoomRegistry.deliver`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.history import Replay
    from wirehub.core.protocol import Frame

__all__ = ["Broker", "ClientRecord", "RoomObserver"]


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A connected client as every node sees it (``queued`` only on its own node)."""

    id: str
    node: str
    kind: str
    rooms: tuple[str, ...]
    connected_at: float
    peer: str | None = None
    queued: int | None = None


class RoomObserver(Protocol):
    """Told synchronously when membership on this node changes (never per message)."""

    def joined(self, room: str, conn: Connection, first: bool) -> None:
        """``conn`` joined ``room``; ``first``: it is the room's only local member."""

    def left(self, room: str, conn: Connection, last: bool) -> None:
        """``conn`` left ``room``; ``last``: no local member is left."""


class Broker(RoomObserver, Protocol):
    """Offsets, history, presence and routing shared by every node of a hub.

    As a :class:`RoomObserver` it hears of every local join and leave (its
    presence records and room subscriptions follow them).

    Every method is safe to call whether or not the backend is reachable: a
    distributed broker degrades to local delivery and says so in
    :meth:`readiness` instead of raising to the caller.
    """

    #: ``"memory"`` or ``"redis"``.
    name: str
    #: False: the node never calls the broker per message (one process).
    distributed: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> dict[str, bool]:
        """Named checks for ``/readyz`` (false while the backend is unreachable)."""
        ...

    async def publish(self, room: str, sender: str, data: Any, *, exclude: str | None) -> int:
        """Sequence ``data`` in ``room``, deliver it on every node; returns its offset."""
        ...

    def publish_nowait(self, room: str, sender: str, data: Any, *, exclude: str | None) -> None:
        """:meth:`publish` for synchronous callers: queued, in order, offset not awaited."""

    async def join(
        self, conn: Connection, room: str, since: int | None, ref: Any = None
    ) -> Frame | None:
        """Join ``conn`` to ``room``; with ``since``, queue the replay after ``joined``.

        Returns the ``joined`` reply (``ref`` set), or None when it was already
        queued, followed by the replayed messages, before any live one.
        """
        ...

    async def history(self, room: str, since: int, limit: int | None = None) -> tuple[int, Replay]:
        """(last offset, messages after ``since``) — NotFound for an unknown room."""
        ...

    async def members(self, room: str) -> dict[str, str]:
        """Every member of ``room`` on every node: client id → node id."""
        ...

    async def send(self, client_id: str, frame: Frame) -> bool:
        """Queue ``frame`` to ``client_id`` on whichever node holds it; False if nobody does."""
        ...

    def send_nowait(self, client_id: str, frame: Frame) -> None:
        """:meth:`send` for synchronous callers (a client on another node)."""

    def client_changed(self, conn: Connection, connected: bool) -> None:
        """A client connected to (or left) this node: keep the shared registry."""

    async def broadcast(self, frame: Frame) -> int:
        """Queue ``frame`` to every client of every node; returns how many."""
        ...

    async def clients(self) -> list[ClientRecord]:
        """Every client of every node."""
        ...

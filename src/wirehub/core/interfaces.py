"""The typing.Protocols the core needs from the parts the hub plugs into it.

:class:`Broker` is the one seam every message crosses: whatever produced it (a
WebSocket frame, HTTP, ``hub.publish``, a job, a service's log, a TCP device),
the node hands it to its broker, which sequences it (offset, history) and hands
the encoded frame back to every node through :class:`Local` — the narrow part
of the node a broker may use (``deliver``, ``local_room``...), never its
internals. ``wirehub.brokers.memory`` is the reference implementation and the
hot path of one process; ``wirehub.brokers.redis`` is the same seam over Redis
(several processes). docs/architecture.md follows one message hop by hop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.history import Replay
    from wirehub.core.protocol import Frame

__all__ = ["Broker", "ClientRecord", "JoinInfo", "Local", "LocalRoom", "RoomObserver", "RoomRules"]


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


@dataclass(slots=True)
class JoinInfo:
    """What a broker knows of a room at a join; the node builds ``joined`` from it.

    ``members`` is None where the room sends no presence events (a list per join
    is work proportional to the room); ``replay`` is set for a join with ``since``.
    """

    room: str
    offset: int
    member_count: int
    members: list[str] | None = None
    replay: Replay | None = None


class RoomRules(Protocol):
    """The per-room settings a broker follows (``core.rooms.RoomPolicy``).

    Read-only properties, so the frozen dataclass satisfies the protocol.
    """

    @property
    def history_size(self) -> int: ...

    @property
    def history_ttl(self) -> float: ...

    @property
    def presence_events(self) -> bool | None: ...


class LocalRoom(Protocol):
    """A room as one node holds it (``core.rooms.Room``), as a broker sees it."""

    name: str

    @property
    def members(self) -> Mapping[str, Connection]:
        """Read-only here (a property), so a room keeping a dict satisfies it."""
        ...

    @property
    def offset(self) -> int: ...

    def presence_events(self) -> bool: ...


class Local(Protocol):
    """The part of a node a broker may use: deliver frames, read its local rooms.

    Frames are already encoded; each call fans out without awaiting a socket.
    """

    node_id: str

    def sequence(self, room: str, sender: str, data: Any) -> tuple[int, str]:
        """Assign ``room``'s next offset in the local room table and keep the
        ``message`` in its history ring: (offset, encoded frame). The memory broker's
        sequencer; a distributed broker sequences elsewhere."""
        ...

    def deliver(self, room: str, frame: str, offset: int, exclude: str | None = None) -> int:
        """Fan a sequenced ``message`` out to the room's local members; how many got it."""
        ...

    def deliver_event(self, room: str, frame: str, exclude: str | None = None) -> int:
        """Fan out a frame that is not history (``presence`` event, ``gap`` notice)."""
        ...

    def deliver_to(self, client_id: str, frame: str) -> bool:
        """Queue ``frame`` to a client of this node; False if it is not here."""
        ...

    def deliver_all(self, frame: str) -> int:
        """Queue ``frame`` to every client of this node; returns how many."""
        ...

    def kick(self, client_id: str) -> None:
        """Close a client here because it connected to another node (4409)."""

    def local_room(self, room: str) -> LocalRoom | None:
        """The room as this node holds it (its local members), or None."""
        ...

    def local_rooms(self) -> Iterable[LocalRoom]:
        """Every room this node holds."""
        ...

    def local_client(self, client_id: str) -> Connection | None: ...

    def local_clients(self) -> list[Connection]: ...

    def policy_for(self, room: str) -> RoomRules: ...


class RoomObserver(Protocol):
    """Told synchronously when membership on this node changes (never per message)."""

    def joined(self, room: str, conn: Connection, first: bool) -> None:
        """``conn`` joined ``room``; ``first``: it is the room's only local member."""

    def left(self, room: str, conn: Connection, last: bool) -> None:
        """``conn`` left ``room``; ``last``: no local member is left."""


class Broker(RoomObserver, Protocol):
    """Offsets, history, presence and routing shared by every node of a hub.

    The node calls it for every message, in both modes (one path); it answers
    through the :class:`Local` it was bound to. As a :class:`RoomObserver` it
    hears of every local join and leave (its presence records and room
    subscriptions follow them).

    Every method is safe to call whether or not the backend is reachable: a
    distributed broker degrades to local delivery and says so in
    :meth:`readiness` instead of raising to the caller.
    """

    #: ``"memory"`` or ``"redis"``.
    name: str
    #: Publishes not delivered because their idempotency key was seen in the window.
    duplicates: int

    def bind(self, local: Local) -> None:
        """The node this broker serves (called once, before :meth:`start`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> dict[str, bool]:
        """Named checks for ``/readyz`` (false while the backend is unreachable)."""
        ...

    async def publish(
        self,
        room: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None,
        idempotency_key: str | None = None,
    ) -> int:
        """Sequence ``data`` in ``room``, deliver it on every node; returns its offset.

        With ``idempotency_key``: if a publish with that key into ``room`` was
        sequenced within the broker's window, deliver nothing and return that
        first offset. The check and the sequencing are one atomic step (two
        nodes racing with one key make one message); ``core.idempotency``.
        """
        ...

    def publish_nowait(self, room: str, sender: str, data: Any, *, exclude: str | None) -> int:
        """:meth:`publish` for synchronous callers, in order: the offset, or 0 when it
        is not known yet (queued for the backend)."""
        ...

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
        """:meth:`publish` without a task or a future: ``done(offset)`` (or the error)
        runs when it is sequenced, in the order the publishes started — before this
        returns in one process, after a round trip with Redis. The node publishes a
        client's ``publish`` frames this way, so a reader never waits on a round trip."""
        ...

    async def join(
        self, conn: Connection, room: str, since: int | None, answer: Callable[[JoinInfo], None]
    ) -> None:
        """``conn`` just joined ``room`` on this node: call ``answer`` with the room's
        state (and, with ``since``, the replay) before delivering any later message
        of the room to it, so ``joined`` + replay always come first."""

    async def history(self, room: str, since: int, limit: int | None = None) -> tuple[int, Replay]:
        """(last offset, messages after ``since``) — NotFound for an unknown room."""
        ...

    async def members(self, room: str) -> Mapping[str, str]:
        """Every member of ``room`` on every node: client id → node id (NotFound if none)."""
        ...

    async def send(self, client_id: str, frame: Frame) -> bool:
        """Queue ``frame`` to ``client_id`` on whichever node holds it; False if nobody does."""
        ...

    def send_nowait(self, client_id: str, frame: Frame) -> bool:
        """:meth:`send` for synchronous callers, for a client not on this node:
        True when handed over to the backend, False when nobody else can hold it."""
        ...

    def client_changed(self, conn: Connection, connected: bool) -> None:
        """A client connected to (or left) this node: keep the shared registry."""

    async def broadcast(self, frame: Frame) -> int:
        """Queue ``frame`` to every client of every node; returns how many."""
        ...

    async def clients(
        self, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[ClientRecord]]:
        """(how many clients every node has, the page ``offset``..``offset+limit``)."""
        ...

    async def client(self, client_id: str) -> ClientRecord | None:
        """One client on any node, or None."""
        ...

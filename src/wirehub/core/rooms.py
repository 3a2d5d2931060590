"""Rooms: membership, presence events, bounded history with offsets, fan-out.

A publish encodes its ``message`` frame once and hands the same string to every
member's :meth:`Connection.send` — a non-blocking ``put`` on a bounded queue.
Nothing here awaits a socket, so one slow member can never stall a room.

The room table is bounded (``max_rooms``) and never walked on a request path:
empty rooms wait in insertion-ordered *idle queues*, oldest-idle first, so
creating, refusing, collecting and evicting a room each look at queue heads
only (O(1) amortised), however many rooms the node holds.

Each room's history ring is :class:`wirehub.core.history.History` (re-exported
here with :class:`~wirehub.core.history.Replay` for existing imports).
"""

from __future__ import annotations

import fnmatch
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from wirehub.core.coalesce import Coalescer, RoomPass
from wirehub.core.connection import Connection, flush_holders, hold_fresh
from wirehub.core.history import History, Replay
from wirehub.core.outbound import Outbound
from wirehub.core.protocol import encode, message_frame
from wirehub.errors import LimitExceeded, NotFound

if TYPE_CHECKING:
    from wirehub.core.interfaces import RoomObserver

__all__ = [
    "MAX_MEMBERS_LISTED",
    "History",
    "Replay",
    "Room",
    "RoomPolicy",
    "RoomRegistry",
    "presence_frame",
]

#: Members listed in a ``joined`` or ``presence`` reply and the HTTP room detail, in
#: either mode: a list per join is work proportional to the room; ``member_count``
#: is always exact.
MAX_MEMBERS_LISTED = 1000


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """Per-room-pattern behaviour; the first policy whose pattern matches wins.

    ``presence_events``: True always sends join/leave events, False never,
    None (auto) sends them while the room has at most ``presence_limit``
    members, so a 10 000-member broadcast room does not cost N² frames.
    """

    pattern: str = "*"
    presence_events: bool | None = None
    presence_limit: int = 100
    history_size: int = 1000
    history_ttl: float = 3600.0
    max_members: int = 10_000

    def matches(self, room: str) -> bool:
        return fnmatch.fnmatchcase(room, self.pattern)


@dataclass(slots=True)
class Room:
    name: str
    policy: RoomPolicy
    history: History
    members: dict[str, Connection] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    last_message_at: float = 0.0
    messages: int = 0
    #: When the room last became empty (or, while empty, last got a message).
    idle_since: float = 0.0
    #: The registry's idle queue holding this room while it has no members.
    idle_in: OrderedDict[str, Room] | None = field(default=None, repr=False, compare=False)
    #: What this room fanned out during the current loop pass, held by its members.
    pending: RoomPass[Connection] | None = field(default=None, repr=False, compare=False)

    @property
    def offset(self) -> int:
        return self.history.last_offset

    def presence_events(self) -> bool:
        wanted = self.policy.presence_events
        if wanted is None:
            return len(self.members) <= self.policy.presence_limit
        return wanted


class RoomRegistry:
    """All rooms of one hub node, with their members and history.

    A room with members is *busy*; an empty one is *idle* and waits, for the
    sake of its history, in one of these queues (oldest-idle first)::

        _bare              idle, no history kept: nothing to lose, goes first
        _idle[ttl]         idle with history, one queue per ``history_ttl``

    Housekeeping (:meth:`collect`) drops queue heads that have nothing left to
    recover; a new room in a full table (``max_rooms``) first takes such a
    head, else evicts the room idle the longest, whatever its history. Only
    when every room has members is the new room refused (``limit_exceeded``).

    A dropped room leaves its last offset behind (up to ``remembered_offsets``
    names, oldest forgotten first), and a later room of that name continues
    from it: a client rejoining with an old ``since`` gets ``recovered:
    false``, never a replay of a newer room's messages as if they were the ones
    it missed.
    """

    def __init__(
        self,
        policies: Iterable[RoomPolicy] = (),
        *,
        max_rooms: int = 100_000,
        remembered_offsets: int | None = None,
    ) -> None:
        self._policies = [*policies, RoomPolicy()]
        self._rooms: dict[str, Room] = {}
        self._bare: OrderedDict[str, Room] = OrderedDict()
        self._idle: dict[float, OrderedDict[str, Room]] = {}
        self._gone: OrderedDict[str, int] = OrderedDict()
        self.max_rooms = max_rooms
        self.remembered_offsets = max_rooms if remembered_offsets is None else remembered_offsets
        #: Idle rooms dropped with nothing left to recover / evicted with history.
        self.collected = 0
        self.evicted = 0
        self.deliveries = 0
        self.bytes_out = 0
        self.published = 0
        #: The node's dirty list: with it a room corks each pass's messages once for
        #: all its members (core/coalesce.py); without it each member is sent each.
        self.coalescer: Coalescer | None = None
        #: Told of membership changes (the node's broker: a distributed one keeps
        #: presence and subscriptions by them); never called per message.
        self.observer: RoomObserver | None = None

    def __contains__(self, name: str) -> bool:
        return name in self._rooms

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

    @property
    def idle(self) -> int:
        """How many rooms have no members (the ones a full table may evict)."""
        return len(self._bare) + sum(len(q) for q in self._idle.values())

    def page(self, offset: int = 0, limit: int = 100) -> list[Room]:
        """Rooms ``offset`` to ``offset + limit`` in creation order (a bounded listing)."""
        return list(islice(self._rooms.values(), offset, offset + limit))

    def policy_for(self, name: str) -> RoomPolicy:
        return next(p for p in self._policies if p.matches(name))

    def get(self, name: str) -> Room:
        room = self._rooms.get(name)
        if room is None:
            raise NotFound(f"room '{name}' does not exist", room=name)
        return room

    def find(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def ensure(self, name: str) -> Room:
        """The room ``name``, created (idle) if needed; O(1) even when the table is full."""
        room = self._rooms.get(name)
        if room is None:
            now = time.time()
            if len(self._rooms) >= self.max_rooms and not self._make_space(now):
                raise LimitExceeded(
                    f"the hub holds its maximum of {self.max_rooms} rooms, all with members",
                    room=name,
                    limit=self.max_rooms,
                )
            policy = self.policy_for(name)
            room = Room(name, policy, History(policy.history_size, policy.history_ttl))
            # A name seen before continues its offsets (see the class docstring).
            room.history.last_offset = self._gone.pop(name, 0)
            self._rooms[name] = room
            self._file_idle(room, now)
        return room

    # -- membership --------------------------------------------------------

    def join(self, conn: Connection, name: str) -> tuple[Room, bool]:
        """Add ``conn`` to ``name``; returns (room, newly_joined). Emits presence."""
        room = self.ensure(name)
        if conn.id in room.members:
            return room, False
        if len(room.members) >= room.policy.max_members:
            raise LimitExceeded(
                f"room '{name}' is full ({room.policy.max_members} members)", room=name
            )
        first = not room.members
        if room.presence_events() and not first:
            self._fanout(room, presence_frame(name, "join", conn.id, conn.kind), exclude=None)
        if first:
            self._unfile_idle(room)
        room.members[conn.id] = conn
        conn.rooms.add(name)
        pending = room.pending
        if pending is not None and pending.current:
            pending.outside[conn.id] = conn  # the pass's later messages, one by one
        if self.observer is not None:
            self.observer.joined(name, conn, first)
        return room, True

    def leave(self, conn: Connection, name: str) -> bool:
        room = self._rooms.get(name)
        conn.rooms.discard(name)
        if room is None or room.members.get(conn.id) is not conn:
            return False
        del room.members[conn.id]
        pending = room.pending
        if pending is not None:
            conn.release(pending)  # keeps what it was sent, takes no more
            pending.outside.pop(conn.id, None)
        if not room.members:
            self._file_idle(room, time.time())
        elif room.presence_events():
            self._fanout(room, presence_frame(name, "leave", conn.id, conn.kind), exclude=None)
        if self.observer is not None:
            self.observer.left(name, conn, not room.members)
        return True

    def leave_all(self, conn: Connection) -> list[str]:
        left = [name for name in list(conn.rooms) if self.leave(conn, name)]
        conn.rooms.clear()
        return left

    # -- publishing --------------------------------------------------------

    def publish(
        self,
        name: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None = None,
        ts: float | None = None,
    ) -> tuple[int, int]:
        """Append to history and fan out; returns (offset, deliveries)."""
        offset, frame = self.sequence(name, sender, data, ts=ts)
        self.published += 1
        return offset, self.deliver(name, offset, frame, exclude=exclude)

    def sequence(
        self, name: str, sender: str, data: Any, *, ts: float | None = None
    ) -> tuple[int, str]:
        """Give the next offset of ``name`` to a ``message`` and keep it in the history
        ring; returns (offset, encoded frame) for :meth:`deliver`. The memory broker's
        sequencer (the room is created if needed)."""
        room = self.ensure(name)
        offset = room.history.last_offset + 1
        now = time.time() if ts is None else ts
        frame = message_frame(name, sender, data, offset, now)
        room.history.append(offset, now, frame)
        return offset, frame

    def deliver(
        self, name: str, offset: int, frame: str | Outbound, *, exclude: str | None = None
    ) -> int:
        """Fan out a message the broker already sequenced (every message, both modes).

        The memory broker kept it in this room's history (:meth:`sequence`); a
        distributed one keeps history itself, so only the head offset is set here.
        """
        room = self._rooms.get(name)
        if room is None:
            return 0
        room.history.last_offset = offset
        room.messages += 1
        room.last_message_at = time.time()
        if not room.members:
            self._file_idle(room, room.last_message_at)
            return 0
        return self._fanout(room, frame, exclude=exclude)

    def broadcast_frame(self, name: str, frame: str, *, exclude: str | None = None) -> int:
        """Fan out an already-encoded frame that is not part of history (events)."""
        room = self._rooms.get(name)
        if room is None:
            return 0
        return self._fanout(room, frame, exclude=exclude)

    def _fanout(self, room: Room, frame: str | Outbound, *, exclude: str | None) -> int:
        # One envelope for every member: each transport form is built once.
        out = frame if isinstance(frame, Outbound) else Outbound(frame)
        pending = room.pending
        if pending is not None and pending.open:
            sent = self._fanout_more(room, pending, out, exclude)
        elif self.coalescer is not None:
            sent = self._fanout_first(room, out, exclude, self.coalescer)
        else:
            sent = 0
            # Copy: a slow consumer closed by send() leaves the room via the hub.
            for client_id, conn in list(room.members.items()):
                if client_id != exclude and conn.send(out):
                    sent += 1
        self.deliveries += sent
        self.bytes_out += sent * out.size
        return sent

    def _fanout_first(
        self, room: Room, out: Outbound, exclude: str | None, coalescer: Coalescer
    ) -> int:
        """The room's first message of this pass: every member that can cork holds a new pass."""
        pending: RoomPass[Connection] = RoomPass(coalescer, flush_holders)
        room.pending = pending
        pending.add(out)
        members = room.members
        excluded = members.get(exclude) if exclude is not None else None
        rest = hold_fresh(pending, members.values(), excluded)
        sent = len(pending.holders)
        outside: list[Connection] = []
        for conn in rest:
            if conn is excluded:
                outside.append(conn)
            elif conn.hold(pending):
                sent += 1
            else:
                outside.append(conn)
                if conn.send(out):
                    sent += 1
        if pending.live:
            for conn in outside:
                if members.get(conn.id) is conn:
                    pending.outside[conn.id] = conn
        else:
            room.pending = None  # nobody corks: later messages go member by member
        return sent

    def _fanout_more(
        self, room: Room, pending: RoomPass[Connection], out: Outbound, exclude: str | None
    ) -> int:
        """A later message of the pass: appended once for every holder, sent to the rest."""
        if exclude is not None:
            excluded = room.members.get(exclude)
            if excluded is not None:
                excluded.release(pending)
        pending.add(out)
        sent = pending.live
        outside = pending.outside
        if outside:
            for client_id, conn in list(outside.items()):
                if client_id != exclude and conn.send(out):
                    sent += 1
        return sent

    # -- idle rooms and housekeeping ---------------------------------------

    def collect(self, now: float, limit: int = 1000) -> int:
        """Drop up to ``limit`` idle rooms with nothing left to recover; returns how many.

        Looks only at the heads of the idle queues, so one call costs O(limit)
        whatever the table's size; the hub calls it in slices. A queue is in
        idle order, not expiry order, so a head still holding live history
        holds back the rooms behind it: each goes within ``history_ttl`` of
        becoming idle all the same, or sooner when a full table needs room.
        """
        dropped = 0
        bare = self._bare
        while bare and dropped < limit:
            self._drop(next(iter(bare.values())))
            dropped += 1
        for ttl, queue in self._idle.items():
            cutoff = now - ttl
            while queue and dropped < limit:
                head = next(iter(queue.values()))
                newest = head.history.newest_ts
                if newest is not None and newest >= cutoff:
                    break
                self._drop(head)
                dropped += 1
        self.collected += dropped
        return dropped

    def _make_space(self, now: float) -> bool:
        """Free one place in a full table; False when every room has members."""
        if self.collect(now, limit=1):
            return True
        oldest: Room | None = None
        for queue in self._idle.values():
            if queue:
                head = next(iter(queue.values()))
                if oldest is None or head.idle_since < oldest.idle_since:
                    oldest = head
        if oldest is None:
            return False
        self._drop(oldest)
        self.evicted += 1
        return True

    def _file_idle(self, room: Room, now: float) -> None:
        """``room`` has no members: (re)queue it as the most recently idle."""
        self._unfile_idle(room)
        if len(room.history):
            ttl = room.policy.history_ttl
            queue = self._idle.get(ttl)
            if queue is None:
                queue = self._idle[ttl] = OrderedDict()
        else:
            queue = self._bare
        queue[room.name] = room
        room.idle_in = queue
        room.idle_since = now

    def _unfile_idle(self, room: Room) -> None:
        if room.idle_in is not None:
            del room.idle_in[room.name]
            room.idle_in = None

    def _drop(self, room: Room) -> None:
        """Forget an idle room, remembering its last offset for a later room of its name."""
        self._unfile_idle(room)
        del self._rooms[room.name]
        if room.history.last_offset and self.remembered_offsets > 0:
            gone = self._gone
            gone[room.name] = room.history.last_offset
            if len(gone) > self.remembered_offsets:
                gone.popitem(last=False)


def presence_frame(room: str, event: str, client_id: str, kind: str | None = None) -> str:
    """A ``presence`` event; ``kind`` is the member's transport (``ws``, ``sse``, ``tcp``)."""
    frame = {"type": "presence", "room": room, "event": event, "client_id": client_id}
    if kind is not None:
        frame["kind"] = kind
    return encode(frame)

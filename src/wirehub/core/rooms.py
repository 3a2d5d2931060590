"""Rooms: membership, presence events, bounded history with offsets, fan-out.

A publish encodes its ``message`` frame once and hands the same string to every
member's :meth:`Connection.send` — a non-blocking ``put`` on a bounded queue.
Nothing here awaits a socket, so one slow member can never stall a room.
"""

from __future__ import annotations

import fnmatch
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wirehub.core.connection import Connection
from wirehub.core.protocol import encode, message_frame
from wirehub.errors import LimitExceeded, NotFound

if TYPE_CHECKING:
    from wirehub.core.interfaces import RoomObserver

__all__ = ["History", "Replay", "Room", "RoomPolicy", "RoomRegistry", "presence_frame"]


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
class Replay:
    """What a ``join`` with ``since`` gets back: frames to resend and whether that is all."""

    frames: list[str]
    recovered: bool
    first_offset: int


class History:
    """A ring of encoded ``message`` frames bounded by count and age."""

    __slots__ = ("_items", "last_offset", "size", "ttl")

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self.last_offset = 0
        self._items: deque[tuple[int, float, str]] = deque()

    def append(self, offset: int, ts: float, frame: str) -> None:
        self.last_offset = offset
        if self.size <= 0:
            return
        self._items.append((offset, ts, frame))
        if len(self._items) > self.size:
            self._items.popleft()

    def expire(self, now: float) -> None:
        cutoff = now - self.ttl
        items = self._items
        while items and items[0][1] < cutoff:
            items.popleft()

    @property
    def first_offset(self) -> int:
        """Offset of the oldest message still kept (last_offset + 1 when empty)."""
        return self._items[0][0] if self._items else self.last_offset + 1

    def __len__(self) -> int:
        return len(self._items)

    def since(self, since: int) -> Replay:
        """Frames with offset > since; ``recovered`` only if none in between was lost."""
        self.expire(time.time())
        if since > self.last_offset:
            # The client saw offsets this history never had (the hub restarted).
            return Replay([], False, self.first_offset)
        frames = [frame for offset, _, frame in self._items if offset > since]
        recovered = since + 1 >= self.first_offset
        return Replay(frames, recovered, self.first_offset)

    def entries(self, since: int = 0, limit: int | None = None) -> Iterator[tuple[int, float, str]]:
        self.expire(time.time())
        count = 0
        for item in self._items:
            if item[0] > since:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return


@dataclass(slots=True)
class Room:
    name: str
    policy: RoomPolicy
    history: History
    members: dict[str, Connection] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    last_message_at: float = 0.0
    messages: int = 0

    @property
    def offset(self) -> int:
        return self.history.last_offset

    def presence_events(self) -> bool:
        wanted = self.policy.presence_events
        if wanted is None:
            return len(self.members) <= self.policy.presence_limit
        return wanted


class RoomRegistry:
    """All rooms of one hub node, with their members and history."""

    def __init__(self, policies: Iterable[RoomPolicy] = (), *, max_rooms: int = 100_000) -> None:
        self._policies = [*policies, RoomPolicy()]
        self._rooms: dict[str, Room] = {}
        self.max_rooms = max_rooms
        self.deliveries = 0
        self.bytes_out = 0
        self.published = 0
        #: Told of membership changes (a distributed broker's presence and
        #: subscriptions); None in embedded mode, so fan-out never pays for it.
        self.observer: RoomObserver | None = None

    def __contains__(self, name: str) -> bool:
        return name in self._rooms

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

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
        room = self._rooms.get(name)
        if room is None:
            if len(self._rooms) >= self.max_rooms:
                self.collect(time.time())
                if len(self._rooms) >= self.max_rooms:
                    raise LimitExceeded(f"the hub holds its maximum of {self.max_rooms} rooms")
            policy = self.policy_for(name)
            room = Room(name, policy, History(policy.history_size, policy.history_ttl))
            self._rooms[name] = room
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
            self._fanout(room, presence_frame(name, "join", conn.id), exclude=None)
        room.members[conn.id] = conn
        conn.rooms.add(name)
        if self.observer is not None:
            self.observer.joined(name, conn, first)
        return room, True

    def leave(self, conn: Connection, name: str) -> bool:
        room = self._rooms.get(name)
        conn.rooms.discard(name)
        if room is None or room.members.get(conn.id) is not conn:
            return False
        del room.members[conn.id]
        if room.members and room.presence_events():
            self._fanout(room, presence_frame(name, "leave", conn.id), exclude=None)
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
        room = self.ensure(name)
        offset = room.history.last_offset + 1
        now = time.time() if ts is None else ts
        frame = message_frame(name, sender, data, offset, now)
        room.history.append(offset, now, frame)
        room.messages += 1
        room.last_message_at = now
        self.published += 1
        return offset, self._fanout(room, frame, exclude=exclude)

    def deliver(self, name: str, offset: int, frame: str, *, exclude: str | None = None) -> int:
        """Fan out a message another node (or the broker) already sequenced.

        The distributed mode's counterpart of :meth:`publish`: history lives
        in the broker, so only the room's head offset is kept here.
        """
        room = self._rooms.get(name)
        if room is None:
            return 0
        room.history.last_offset = offset
        room.messages += 1
        room.last_message_at = time.time()
        return self._fanout(room, frame, exclude=exclude)

    def broadcast_frame(self, name: str, frame: str, *, exclude: str | None = None) -> int:
        """Fan out an already-encoded frame that is not part of history (events)."""
        room = self._rooms.get(name)
        if room is None:
            return 0
        return self._fanout(room, frame, exclude=exclude)

    def _fanout(self, room: Room, frame: str, *, exclude: str | None) -> int:
        sent = 0
        # Copy: a slow consumer closed by send() leaves the room via the hub.
        for client_id, conn in list(room.members.items()):
            if client_id != exclude and conn.send(frame):
                sent += 1
        self.deliveries += sent
        self.bytes_out += sent * len(frame)
        return sent

    # -- housekeeping ------------------------------------------------------

    def collect(self, now: float) -> int:
        """Drop empty rooms whose history has aged out; returns how many went."""
        dropped = 0
        for name, room in list(self._rooms.items()):
            if room.members:
                continue
            room.history.expire(now)
            # An empty room with no history left has nothing to recover: a later
            # join starts offsets over, and a client asking ``since`` an old
            # offset is told ``recovered: false``.
            if len(room.history) == 0:
                del self._rooms[name]
                dropped += 1
        return dropped


def presence_frame(room: str, event: str, client_id: str) -> str:
    return encode({"type": "presence", "room": room, "event": event, "client_id": client_id})

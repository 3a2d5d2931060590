"""Write coalescing: what one connection is sent during one loop pass leaves in one write.

A write syscall costs more than everything else a delivery does (one loopback
``write`` ≈ 4 µs of CPU here; 16 frames in one write cost about the same,
docs/benchmarks.md "physical floor"). A fan-out that writes each frame at once
pays it once per message per subscriber. Instead, a connection that can write
raw frames *corks* them: the frames it is sent are kept in a short list, the
connection is put on this loop's dirty list once, and one ``call_soon``
callback per loop pass flushes every dirty connection with one vectored write
each — at the end of the same pass, so nothing waits for a timer and latency
does not grow. The more messages a pass produces (a publisher's burst read in
one go, several publishers), the fewer syscalls per delivery.

One :class:`Coalescer` per node: the dirty list is a plain list (no task, no
future per connection), scheduled at most once per pass. It holds connections
that corked frames of their own and room passes: a room pass is on it once
and, at the end of the pass, writes every member that holds it in one loop.

A room corks once, not once per member (:class:`RoomPass`): the first message
a room fans out in a pass puts one shared list in every member's cork; the
pass's later messages are appended to that list once, whatever the room's
size, so a burst of k messages to N members costs N cork entries, not k * N.
A member whose cork must take something else in between (a message of another
room, a reply, being excluded from one message, leaving) *seals* its
reference at the list's current length and takes the pass's later messages
one by one, so every connection still gets its frames in the order they were
sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from wirehub.core.outbound import Outbound

__all__ = ["CORK_MAX_BYTES", "CORK_MAX_FRAMES", "Coalescer", "Corked", "Member", "RoomPass"]

#: A cork (or a room pass) is flushed or closed when it holds this many frames
#: or bytes: one pass that produces more for one peer writes more than once,
#: and memory stays bounded.
CORK_MAX_FRAMES = 256
CORK_MAX_BYTES = 256 * 1024


class Corked(Protocol):
    """What the coalescer needs of a connection: flush what it corked."""

    def flush(self) -> None: ...


class Member(Corked, Protocol):
    """What a room pass needs of a member (a Connection; named here so that
    core/connection.py, which builds on this module, is not imported back)."""

    id: str

    def send(self, frame: Outbound | str | bytes) -> bool: ...


M = TypeVar("M", bound=Member)


class Coalescer:
    """The dirty list of one event loop, flushed once per pass by one callback."""

    __slots__ = ("_dirty", "at_end", "flushes")

    def __init__(self) -> None:
        self._dirty: list[Corked] = []
        #: What lets go once every dirty entry is written: a coalesced write's
        #: frames cache (it holds the list that holds its first message, a cycle
        #: otherwise left to the collector) and each room pass (so that a room
        #: that goes quiet keeps neither its last messages nor their members).
        self.at_end: list[Callable[[], None]] = []
        #: Passes that flushed something: also the number of the pass under way
        #: (a :class:`RoomPass` of an earlier number is over).
        self.flushes = 0

    def mark(self, conn: Corked) -> None:
        """``conn`` corked its first frame of this pass: flush it at the end of the pass."""
        dirty = self._dirty
        if not dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        dirty.append(conn)

    def flush(self) -> None:
        """Flush every dirty connection (each one write); also safe to call early."""
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        self.flushes += 1  # first: every room pass of the pass now ending is over
        for conn in dirty:
            conn.flush()
        at_end = self.at_end
        if at_end:
            self.at_end = []
            for release in at_end:
                release()


class RoomPass(Generic[M]):
    """The messages one room fans out during one loop pass, held once by its members.

    ``live`` members hold it at the end of their cork and get every message
    appended to it without being touched; the ``outside`` members (they
    sealed their reference, were excluded, joined mid-pass, or cannot cork)
    get each later message by an ordinary send. The pass is open while its
    loop pass lasts, some member holds it and it is under the cork bounds.
    """

    __slots__ = (
        "coalescer",
        "flush_holders",
        "full",
        "holders",
        "live",
        "messages",
        "outside",
        "pass_no",
        "size",
    )

    def __init__(self, coalescer: Coalescer, flush_holders: Callable[[RoomPass[M]], None]) -> None:
        self.coalescer = coalescer
        self.pass_no = coalescer.flushes
        self.messages: list[Outbound] = []
        self.size = 0
        self.live = 0
        #: Every member that took it (in its cork): the pass flushes them at its end.
        self.holders: list[M] = []
        self.outside: dict[str, M] = {}
        self.full = False
        # connection.py's loop over the holders (it owns their corks); the first
        # holder puts the pass on the dirty list.
        self.flush_holders = flush_holders

    def flush(self) -> None:
        """The end of the loop pass: every holder writes (one loop for the room, no call each)."""
        self.flush_holders(self)
        self.coalescer.at_end.append(self.end)

    def end(self) -> None:
        """Every member of the pass has been written (the coalescer's flush is over): let go."""
        messages = self.messages
        if len(messages) > 1:
            messages[0].forget_frames()  # the holders' write was one cached list
        self.messages = []
        self.holders = []
        self.outside = {}
        self.live = 0
        self.full = True

    def __repr__(self) -> str:
        n, live, outside = len(self.messages), self.live, len(self.outside)
        return f"<RoomPass {n} messages, {live} live, {outside} outside>"

    @property
    def current(self) -> bool:
        """Whether this pass may still take messages (its loop pass lasts, under the bounds)."""
        return not self.full and self.pass_no == self.coalescer.flushes

    @property
    def open(self) -> bool:
        """Whether a message fanned out now may just be appended here (someone holds it)."""
        return self.live > 0 and not self.full and self.pass_no == self.coalescer.flushes

    def add(self, out: Outbound) -> None:
        messages = self.messages
        messages.append(out)
        self.size += out.size
        if len(messages) >= CORK_MAX_FRAMES or self.size >= CORK_MAX_BYTES:
            self.full = True

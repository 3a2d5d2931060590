"""Per-room delivery order on one node, without I/O: offsets in, decisions out.

A room's messages reach a node from two sides (its own publish script's reply
and the room's pub/sub channel) and, after a loss, from the room's stream. This
object decides, for each message it is offered, whether it is delivered now,
waits for a missing offset, or is a duplicate; it says which range to read back
from the stream, and when a range is gone for good it says ``gap``.

It owns no timer and no socket: a wait for a missing offset is an explicit
:attr:`RoomOrder.deadline` (in the caller's clock) that the caller schedules,
and a read-back is a range the caller fetches and hands to :meth:`fill`.
``tests/unit/test_redis_ordering.py`` drives it with plain values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Decision", "Deliver", "Gap", "RoomOrder"]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``frame`` (the encoded ``message``) to the room's local members."""

    offset: int
    frame: str
    exclude: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets ``first..last`` are lost (``last`` None: unknown how many)."""

    first: int
    last: int | None
    reason: str


Decision = Deliver | Gap


@dataclass(eq=False, slots=True)
class RoomOrder:
    """Delivery state of one room: strictly increasing offsets, each delivered once.

    ``delivered`` is None until the first sync with the broker; while not
    ``synced`` (a sync or a reconnect in progress) or ``paused`` (joins replying
    first), arriving messages wait in ``pending``.
    """

    gap_timeout: float = 1.0
    #: Last offset delivered here; None until the first sync.
    delivered: int | None = None
    #: Messages that arrived ahead of a missing offset (or while held).
    pending: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    #: Joins in progress: delivery waits so ``joined`` + replay go first.
    paused: int = 0
    synced: bool = False
    #: When a missing offset should be read back (None: nothing is waited for).
    deadline: float | None = None

    # -- live messages ---------------------------------------------------------

    def offer(self, offset: int, frame: str, exclude: str | None, now: float) -> list[Decision]:
        """A message arrived (channel or own publish); returns what to deliver now."""
        delivered = self.delivered
        if self.synced and not self.paused and delivered is not None and offset == delivered + 1:
            self.delivered = offset
            out: list[Decision] = [Deliver(offset, frame, exclude)]
            if self.pending:
                out += self.drain(now)
            return out
        if delivered is not None and offset <= delivered:
            return []  # already delivered (an echo, or replayed from the stream)
        self.pending[offset] = (frame, exclude)
        return self.drain(now) if self.synced and not self.paused else []

    def drain(self, now: float) -> list[Decision]:
        """Deliver what waits in order; at a hole, start the gap deadline."""
        if not self.synced or self.paused or self.delivered is None:
            return []
        pending = self.pending
        for stale in [o for o in pending if o <= self.delivered]:
            del pending[stale]
        out: list[Decision] = []
        while pending:
            item = pending.pop(self.delivered + 1, None)
            if item is None:
                if self.deadline is None:
                    self.deadline = now + self.gap_timeout
                break
            self.delivered += 1
            out.append(Deliver(self.delivered, item[0], item[1]))
        return out

    # -- joins -----------------------------------------------------------------

    def hold(self) -> None:
        """A join starts: live messages wait until :meth:`release`."""
        self.paused += 1

    def release(self, now: float) -> list[Decision]:
        """A join has queued its reply: deliver what waited meanwhile."""
        self.paused -= 1
        return [] if self.paused else self.drain(now)

    # -- read-back -------------------------------------------------------------

    def expire(self) -> tuple[int, int] | None:
        """The caller's timer for :attr:`deadline` fired: the range to read back, if any
        (None when the hole filled itself meanwhile)."""
        if self.deadline is None:
            return None
        self.deadline = None
        return self.missing()

    def missing(self) -> tuple[int, int] | None:
        """Offsets between the last delivered and the first waiting one (inclusive)."""
        if not self.pending or self.delivered is None or not self.synced:
            return None
        first, last = self.delivered + 1, min(self.pending) - 1
        return (first, last) if last >= first else None

    def fill(self, entries: Iterable[tuple[int, str, str | None]], upto: int) -> list[Decision]:
        """Deliver stream ``entries`` (offset order) up to ``upto``; a Gap for what is gone."""
        assert self.delivered is not None
        out: list[Decision] = []
        for offset, frame, exclude in entries:
            if offset <= self.delivered:
                continue
            if offset > upto:
                break
            if offset != self.delivered + 1:
                out.append(Gap(self.delivered + 1, offset - 1, "history_trimmed"))
            self.delivered = offset
            out.append(Deliver(offset, frame, exclude))
        if self.delivered < upto:
            out.append(Gap(self.delivered + 1, upto, "history_trimmed"))
            self.delivered = upto
        return out

    # -- sync with the broker ----------------------------------------------------

    def lost(self) -> int | None:
        """The broker went away: hold delivery; returns the offset delivered so far."""
        self.synced = False
        return self.delivered

    def resync(self, current: int) -> tuple[str, list[Decision]]:
        """The broker's head is ``current``: ``("catch_up", [])`` means read back up to it.

        Otherwise ``("ok", decisions)``: nothing to read (``"ok"``), or the broker
        lost its data (``"reset"``: the caller raises its counter to ``delivered``).
        """
        if self.delivered is None:
            self.delivered = current
            return "ok", []
        if current < self.delivered:
            self.pending.clear()
            return "reset", [Gap(current + 1, None, "broker_reset")]
        if current > self.delivered:
            return "catch_up", []
        return "ok", []

    def synced_now(self, now: float) -> list[Decision]:
        """The sync is done: deliver what waited."""
        self.synced = True
        return self.drain(now)

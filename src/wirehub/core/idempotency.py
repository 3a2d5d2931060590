"""Idempotency keys of ``publish``: the key check and the in-memory key table.

A producer that retries (a back-end whose HTTP call timed out, a client that
reconnected before its ``ack``) sends the same ``idempotency_key`` again; a
publish whose key was already used in the same room within the window is not
delivered again and answers the first one's offset. The check belongs to the
broker, which sequences every message (docs/architecture.md), so WebSocket,
HTTP and ``hub.publish`` all get it: :class:`KeyTable` is what the memory
broker (and the Redis broker while Redis is out of reach) remembers; the Redis
broker keeps the keys in Redis, checked in its publish script.

Sans-I/O and bounded: the table holds at most ``max_keys`` entries (the oldest
evicted first) and forgets each after ``window`` seconds. With one window for
every key, insertion order is expiry order, so expired keys are always at the
front of the ordered dict: each call pops what has expired there, O(1)
amortised, never a scan of the table.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from wirehub.core.protocol import json_type
from wirehub.errors import BadRequest

__all__ = ["DEFAULT_MAX_KEYS", "DEFAULT_WINDOW", "MAX_KEY_LENGTH", "KeyTable", "check_key"]

#: Longest ``idempotency_key`` accepted (characters): a bound on what a key costs.
MAX_KEY_LENGTH = 128
#: Seconds a key is remembered (``[limits] idempotency_window``).
DEFAULT_WINDOW = 300.0
#: Keys the memory table holds at most (``[limits] idempotency_max_keys``).
DEFAULT_MAX_KEYS = 100_000


def check_key(value: object, field: str = "idempotency_key") -> str | None:
    """``value`` as a key (None: no key), or BadRequest naming what is wrong with it.

    Control characters are refused: a key is an id a producer chose, and the
    Redis broker's key name ends with it.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(
            f"field '{field}' must be a non-empty string, got {json_type(value)}", field=field
        )
    if len(value) > MAX_KEY_LENGTH:
        raise BadRequest(f"field '{field}' is longer than {MAX_KEY_LENGTH} characters", field=field)
    if not value.isprintable():
        raise BadRequest(f"field '{field}' must not contain control characters", field=field)
    return value


class KeyTable:
    """(room, key) → the offset of the first publish with that key, for ``window`` s.

    ``clock`` is injectable so tests can pass time without sleeping.
    """

    __slots__ = ("_clock", "_entries", "evicted", "max_keys", "window")

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("window must be > 0 and max_keys >= 1")
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        # (room, key) → (expires at, offset), in insertion (= expiry) order.
        self._entries: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        #: Keys dropped before their window ended because the table was full.
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, room: str, key: str) -> int | None:
        """The first publish's offset if ``key`` was used in ``room`` within the window."""
        self._expire(self._clock())
        entry = self._entries.get((room, key))
        return None if entry is None else entry[1]

    def put(self, room: str, key: str, offset: int) -> None:
        """Remember that ``key`` published ``offset`` in ``room`` (from now on)."""
        now = self._clock()
        self._expire(now)
        entries = self._entries
        entries[(room, key)] = (now + self.window, offset)
        entries.move_to_end((room, key))  # a re-put key expires last
        while len(entries) > self.max_keys:
            entries.popitem(last=False)
            self.evicted += 1

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first[0] > now:
                return
            entries.popitem(last=False)

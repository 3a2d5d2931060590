"""One jittered, capped exponential backoff, shared by every retry loop."""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff"]


def backoff(
    *,
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: float = 1.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield delays: ``initial * factor**n`` capped at ``cap``, with full jitter.

    ``jitter=1.0`` is "full jitter" (uniform in [0, delay]) which spreads
    reconnect storms; ``jitter=0`` gives the plain exponential sequence.
    """
    rnd = rng or random.Random()
    delay = initial
    while True:
        low = delay * (1.0 - jitter)
        yield low + rnd.random() * (delay - low)
        delay = min(cap, delay * factor)

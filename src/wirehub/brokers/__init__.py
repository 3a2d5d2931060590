"""Implementations of :class:`wirehub.core.interfaces.Broker`, one per file.

``memory`` is the reference (one process, no dependency); ``redis`` lets several
hub processes share rooms, presence and history. :func:`create_broker` picks
one from the configured URL and imports ``redis`` only when it is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wirehub.brokers.memory import MemoryBroker

if TYPE_CHECKING:
    from wirehub.core.interfaces import Broker

__all__ = ["MemoryBroker", "create_broker"]


def create_broker(url: str | None, **options: Any) -> Broker:
    """``None`` → :class:`MemoryBroker`; ``redis://`` / ``rediss://`` / ``unix://`` → Redis.

    The broker is not bound yet: ``Node.use_broker`` (or ``Node(broker=...)``) binds it.
    """
    if not url:
        # Of the options, only the idempotency bounds mean something in one process.
        kept = ("idempotency_window", "idempotency_max_keys")
        return MemoryBroker(**{k: v for k, v in options.items() if k in kept})
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from wirehub.brokers.redis import RedisBroker

        return RedisBroker(url, **options)
    raise ValueError(f"no broker for URL scheme '{scheme}' (expected redis://, rediss://, unix://)")

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
    from wirehub.core.node import Node

__all__ = ["MemoryBroker", "create_broker"]


def create_broker(node: Node, url: str | None, **options: Any) -> Broker:
    """``None`` → :class:`MemoryBroker`; ``redis://`` / ``rediss://`` / ``unix://`` → Redis."""
    if not url:
        return MemoryBroker(node)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from wirehub.brokers import redis as redis_broker

        return redis_broker.RedisBroker(node, url, **options)
    raise ValueError(f"no broker for URL scheme '{scheme}' (expected redis://, rediss://, unix://)")

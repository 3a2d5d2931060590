"""The Redis broker, one concern per module (docs/architecture.md draws the package).

=================  ==============================================================
``broker.py``      :class:`RedisBroker`: the ``Broker`` seam over Redis (publish,
                   join, queries), carrying out what ``ordering`` decides
``session.py``     connect, subscribe, resync, read; reconnect with backoff
``ordering.py``    sans-I/O per-room order and gap detection (offsets in, decisions out)
``wire.py``        the inter-node message format (M/P/G/D/K/B/R), encode and decode
``streams.py``     reads of a room's history stream (replays, read-backs)
``registry.py``    this node's presence, clients, heartbeat; reaping dead nodes
``revocations.py`` token revocations shared through Redis keys
``scripts.py``     the Lua scripts
=================  ==============================================================

Key names are in :mod:`wirehub.brokers.keys`. Importing this package imports
``redis`` (the ``redis`` extra); ``wirehub.brokers.create_broker`` does so only
for a ``redis://`` URL.
"""

from __future__ import annotations

from wirehub.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]

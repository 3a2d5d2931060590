"""What the protocol classes share: their logger and how they name a peer."""

from __future__ import annotations

import logging

__all__ = ["logger", "peer"]

logger = logging.getLogger("wirehub.wire")


def peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"

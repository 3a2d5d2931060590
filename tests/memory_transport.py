"""A peer's socket in memory, for tests of the core without sockets.

It declines the fast write (``try_write``), so every frame takes the queued path
through ``send``; it records what was sent and how the peer was closed.
"""

from __future__ import annotations

from typing import Any

import orjson

from wirehub.core.connection import Connection
from wirehub.core.outbound import Outbound

__all__ = ["MemoryTransport", "memory_peer"]


class MemoryTransport:
    def __init__(self, kind: str = "ws") -> None:
        self.kind = kind
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    @property
    def frames(self) -> list[dict[str, Any]]:
        """What was sent, decoded."""
        return [orjson.loads(text) for text in self.sent]

    coalesces = False

    def try_writelines(self, outs: list[Outbound]) -> bool:
        return False

    def try_write(self, out: Outbound) -> bool:
        return False  # no fast path: every frame goes through send

    async def send(self, frame: Outbound) -> None:
        self.sent.append(frame.text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def abort(self) -> None:
        self.closed = (-1, "aborted")


def memory_peer(client_id: str, **kwargs: Any) -> Connection:
    return Connection(client_id, MemoryTransport(), **kwargs)

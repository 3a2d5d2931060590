"""Names for the identifiers that travel through the hub."""

from __future__ import annotations

from typing import Any, NewType

__all__ = ["JSON", "ClientId", "RoomName"]

ClientId = NewType("ClientId", str)
RoomName = NewType("RoomName", str)
JSON = Any

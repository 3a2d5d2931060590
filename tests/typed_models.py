"""Pydantic models the typed-handler and typed-room tests name by import string.

Importable as ``typed_models:Order`` (tests/ is on the path), like a user's
``[[rooms]] model = "myapp.models:Order"``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

NOT_A_MODEL = {"total": 1}


class Order(BaseModel):
    """An order placed in an ``orders:*`` room."""

    id: int
    total: float = Field(ge=0)
    currency: Literal["EUR", "USD"] = "EUR"


class Typing(BaseModel):
    """Someone is typing in a room."""

    room: str = Field(min_length=1)
    text: str


class TypingAck(BaseModel):
    room: str
    chars: int

"""The client's side of the wire outside the frames: the connect URL and batched text frames.

A client that connects with ``batch=1`` (docs/protocol.md, "Batched frames") may get
several JSON messages in one text frame, separated by a single LF. The hub encodes its
JSON compactly and escapes LF inside strings, so a raw LF only ever separates messages
and splitting on it is exact. Both helpers are pure (no socket), so they are tested with
plain strings (tests/unit/test_client_wire.py) and ``connection.py`` stays about I/O.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

__all__ = ["connect_url", "split_frames"]

logger = logging.getLogger("wirehub.client")

#: Query parameters the client owns: a value already in the URL is replaced, not doubled.
_OWN_PARAMS = ("client_id", "token", "batch")


def connect_url(
    url: str, client_id: str | None = None, token: str | None = None, *, batch: bool = False
) -> str:
    """``url`` with the client's query parameters set (``client_id``, ``token``, ``batch=1``).

    Other parameters of ``url`` are kept; the client's own ones are replaced, so a
    reconnect with a fresh token never sends two ``token`` values."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OWN_PARAMS]
    if client_id:
        query.append(("client_id", client_id))
    if token:
        query.append(("token", token))
    if batch:
        query.append(("batch", "1"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def split_frames(raw: str, *, batched: bool = False) -> list[dict[str, Any]]:
    """The messages of one text frame, in order (one, unless ``batched`` and LF-separated).

    A piece that is not a JSON object is dropped with a warning naming it, and the
    rest of the frame is still delivered: one bad message from a peer must not end
    the reader. Empty pieces (a stray trailing LF) are skipped. The frame itself is
    already bounded by the connection's ``max_size``, so the list is too."""
    pieces = raw.split("\n") if batched and "\n" in raw else (raw,)
    frames: list[dict[str, Any]] = []
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        try:
            frame = orjson.loads(piece)
        except orjson.JSONDecodeError as exc:
            logger.warning("dropped message %d of a text frame: not JSON (%s)", index + 1, exc)
            continue
        if not isinstance(frame, dict):
            kind = type(frame).__name__
            logger.warning(
                "dropped message %d of a text frame: a JSON %s, not an object", index + 1, kind
            )
            continue
        frames.append(frame)
    return frames

"""The wire protocol, sans I/O: decode client frames, encode server frames once.

docs/protocol.md is the authority; this module is its executable form. Frames
are JSON objects with a ``type``; replies echo the client's ``ref``.
"""

from __future__ import annotations

import re
import time
from enum import IntEnum
from typing import Any

import orjson

from wirehub.errors import BadRequest, TooLarge, WirehubError

__all__ = [
    "CLIENT_ID_RE",
    "ROOM_RE",
    "CloseCode",
    "Frame",
    "decode",
    "encode",
    "error_frame",
    "message_frame",
    "opt_int",
    "opt_str",
    "req_room",
    "req_str",
]

Frame = dict[str, Any]

#: Room names: 1-200 printable characters without whitespace. A leading ``$``
#: marks the hub's system rooms, which peers may join but not publish into.
ROOM_RE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")
#: Client ids: what a query string can carry plainly, also ``tcp:<bridge>:<host>:<port>``.
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class CloseCode(IntEnum):
    """WebSocket close codes the hub sends (docs/protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001  # hub shutting down
    POLICY = 1008
    TOO_BIG = 1009  # a frame over the transport's hard cap
    INTERNAL = 1011
    SLOW_CONSUMER = 4001  # outbound queue full
    HEARTBEAT_TIMEOUT = 4002  # no answer to the server's ping in time
    KICKED = 4003  # disconnected through the API
    RATE_LIMITED = 4029  # kept sending over its rate limit (persistent abuse)
    BAD_CLIENT_ID = 4400  # client_id in the query string is invalid
    REPLACED = 4409  # another connection took over this client_id


def encode(frame: Frame) -> str:
    """Encode a server frame to the text sent on the wire (done once per publish)."""
    return orjson.dumps(frame).decode()


def decode(payload: str | bytes, *, max_size: int) -> Frame:
    """Parse one client text frame; raise a :class:`WirehubError` with the precise reason."""
    size = len(payload)
    if isinstance(payload, str) and size * 4 > max_size:
        size = len(payload.encode())  # exact UTF-8 size only when it could matter
    if size > max_size:
        raise TooLarge(f"frame of {size} bytes exceeds the limit of {max_size}", limit=max_size)
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise BadRequest(f"a frame must be a JSON object, got {type(frame).__name__}")
    kind = frame.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadRequest("missing field 'type' (a non-empty string)")
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str | int) or isinstance(ref, bool)):
        raise BadRequest("field 'ref' must be a string or an integer")
    if isinstance(ref, str) and len(ref) > 128:
        raise BadRequest("field 'ref' is longer than 128 characters")
    return frame


def req_str(frame: Frame, name: str, *, max_len: int = 200) -> str:
    value = frame.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"missing field '{name}' (a non-empty string)")
    if len(value) > max_len:
        raise BadRequest(f"field '{name}' is longer than {max_len} characters")
    return value


def opt_str(frame: Frame, name: str, *, max_len: int = 200) -> str | None:
    if frame.get(name) is None:
        return None
    return req_str(frame, name, max_len=max_len)


def req_room(frame: Frame, name: str = "room") -> str:
    room = req_str(frame, name)
    if not ROOM_RE.match(room):
        raise BadRequest(
            f"field '{name}' is not a valid room name (1-200 characters, no whitespace)"
        )
    return room


def opt_int(frame: Frame, name: str, *, minimum: int = 0) -> int | None:
    value = frame.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadRequest(f"field '{name}' must be an integer >= {minimum}")
    return value


def error_frame(exc: WirehubError, ref: Any = None) -> str:
    body: Frame = {"type": "error"}
    if ref is not None:
        body["ref"] = ref
    body.update(exc.to_wire())
    return encode(body)


def message_frame(room: str, sender: str, data: Any, offset: int, ts: float | None = None) -> str:
    return encode(
        {
            "type": "message",
            "room": room,
            "from": sender,
            "data": data,
            "offset": offset,
            "ts": time.time() if ts is None else ts,
        }
    )

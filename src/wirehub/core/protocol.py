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
    "FIELD_TYPES",
    "ROOM_RE",
    "CloseCode",
    "Frame",
    "decode",
    "encode",
    "error_frame",
    "json_type",
    "message_frame",
    "message_head",
    "opt_bool",
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

#: Fields the built-in handlers read without a checking helper (``req_str``,
#: ``req_room``, ``opt_int`` name the field and the type they got): their JSON
#: type, checked by :func:`decode` when present, so ``"echo": "yes"`` is a
#: ``bad_request`` naming the field instead of being read as false. ``None``
#: (JSON null) counts as absent for optional fields.
FIELD_TYPES: dict[str, dict[str, tuple[str, bool]]] = {
    # frame type: {field: (JSON type, optional)}
    "publish": {"echo": ("boolean", True)},
}

_ARTICLE = {"integer": "an integer", "object": "an object", "array": "an array"}


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
    TOKEN_EXPIRED = 4401  # the token expired and was not refreshed in time
    REVOKED = 4403  # the token or its subject was revoked: do not reconnect
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
    if "type" not in frame:
        raise BadRequest("missing field 'type' (a non-empty string)")
    kind = frame["type"]
    if not isinstance(kind, str) or not kind:
        raise BadRequest(f"field 'type' must be a non-empty string, got {json_type(kind)}")
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str | int) or isinstance(ref, bool)):
        raise BadRequest(f"field 'ref' must be a string or an integer, got {json_type(ref)}")
    if isinstance(ref, str) and len(ref) > 128:
        raise BadRequest("field 'ref' is longer than 128 characters")
    fields = FIELD_TYPES.get(kind)
    if fields is not None:
        for name, (expected, optional) in fields.items():
            if name in frame:
                _check_type(frame[name], name, expected, optional, ref)
    return frame


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "an empty string" if not value else "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_type(value: Any, name: str, expected: str, optional: bool, ref: Any) -> None:
    if value is None and optional:
        return
    if expected == "string":
        ok = isinstance(value, str)
    elif expected == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "boolean":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, dict)
    if not ok:
        wanted = (
            "true or false" if expected == "boolean" else _ARTICLE.get(expected, f"a {expected}")
        )
        # The frame is valid JSON with a valid ref: the error carries that ref
        # (the caller has not read it yet when decode raises).
        extra = {"field": name} if ref is None else {"field": name, "ref": ref}
        raise BadRequest(f"field '{name}' must be {wanted}, got {json_type(value)}", **extra)


def req_str(frame: Frame, name: str, *, max_len: int = 200) -> str:
    if frame.get(name) is None:
        raise BadRequest(f"missing field '{name}' (a non-empty string)", field=name)
    value = frame[name]
    if not isinstance(value, str) or not value:
        raise BadRequest(
            f"field '{name}' must be a non-empty string, got {json_type(value)}", field=name
        )
    if len(value) > max_len:
        raise BadRequest(f"field '{name}' is longer than {max_len} characters", field=name)
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
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(
            f"field '{name}' must be an integer >= {minimum}, got {json_type(value)}", field=name
        )
    if value < minimum:
        raise BadRequest(f"field '{name}' must be an integer >= {minimum}, got {value}", field=name)
    return value


def opt_bool(frame: Frame, name: str, *, default: bool = False) -> bool:
    """A boolean flag: absent or null is ``default``; anything but true/false is refused."""
    value = frame.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(
            f"field '{name}' must be true or false, got {json_type(value)}", field=name
        )
    return value


def error_frame(exc: WirehubError, ref: Any = None) -> str:
    body: Frame = {"type": "error"}
    if ref is not None:
        body["ref"] = ref
    body.update(exc.to_wire())
    return encode(body)


def message_head(room: str, sender: str, data: Any, ts: float) -> str:
    """A ``message`` frame up to its offset: it ends with ``"offset":``.

    The one place a message frame is built. The memory broker closes it with
    the offset it took (:func:`message_frame`); the Redis broker hands the head
    to its publish script, which appends the offset Redis assigns.
    """
    head = encode({"type": "message", "room": room, "from": sender, "data": data, "ts": ts})
    return head[:-1] + ',"offset":'


def message_frame(room: str, sender: str, data: Any, offset: int, ts: float | None = None) -> str:
    """A whole ``message`` frame: :func:`message_head` closed with ``offset``."""
    return f"{message_head(room, sender, data, time.time() if ts is None else ts)}{offset}}}"

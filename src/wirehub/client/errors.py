"""The client's own errors, and the map from a hub's ``error`` frame to an exception.

They live in the one tree of :mod:`wirehub.errors` (defined there, re-exported here)::

    WirehubError
    ├── Disconnected     disconnected   the socket went away before the reply (or closed)
    │   └── TokenRevoked revoked        the hub revoked the token (4403): no reconnect
    └── JobFailed        job_failed     the job ended failed or cancelled

Every other ``error`` frame becomes the :mod:`wirehub.errors` class of its ``code``.
A hub that cannot be reached raises one of :data:`CONNECT_ERRORS` from ``connect()``.
"""

from __future__ import annotations

from typing import Any

from websockets.exceptions import WebSocketException

from wirehub.errors import (
    BadRequest,
    Conflict,
    Disconnected,
    Forbidden,
    JobFailed,
    LimitExceeded,
    NotFound,
    RateLimited,
    TokenRevoked,
    TooLarge,
    Unauthorized,
    UnknownType,
    WirehubError,
)

__all__ = ["CONNECT_ERRORS", "Disconnected", "JobFailed", "TokenRevoked", "error_from_wire"]

#: What opening a connection raises when the hub cannot be reached or refuses the
#: handshake (refused port, DNS, timeout, an HTTP status instead of the upgrade, a bad URL).
CONNECT_ERRORS: tuple[type[Exception], ...] = (OSError, TimeoutError, WebSocketException)

_ERRORS: dict[str, type[WirehubError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        UnknownType,
        NotFound,
        Unauthorized,
        Forbidden,
        TooLarge,
        LimitExceeded,
        RateLimited,
        Conflict,
    )
}


def error_from_wire(frame: dict[str, Any]) -> WirehubError:
    """Turn an ``error`` frame into the matching :mod:`wirehub.errors` exception."""
    code = str(frame.get("code", "internal"))
    fields = {k: v for k, v in frame.items() if k not in ("type", "ref", "code", "message")}
    cls = _ERRORS.get(code, WirehubError)
    exc = cls(str(frame.get("message", code)), **fields)
    if cls is WirehubError:
        exc.code = code
    return exc

"""The one error tree of wirehub.

Every error a peer can cause maps to a wire ``code`` that ends up in an
``error`` frame (WebSocket), a JSON body (HTTP) or an event (TCP bridges)::

    WirehubError                 code
    ├── BadRequest               bad_request     malformed frame, ill-typed field
    │   └── UnknownType          unknown_type    a ``type`` nobody handles
    ├── NotFound                 not_found       unknown room, client, job
    ├── Unauthorized             unauthorized    no valid credentials (token, API key)
    ├── Forbidden                forbidden       not allowed for this peer
    ├── TooLarge                 too_large       frame, payload or upload over its limit
    ├── LimitExceeded            limit_exceeded  rooms per connection, members per room
    ├── RateLimited              rate_limited    too many frames per second
    ├── Conflict                 conflict        state does not allow it (duplicate id…)
    └── ConfigError              config_error    invalid settings, caught at start

Raise them from handlers (``@hub.on``) to answer a peer with that code; the
message is shown to the peer as is, so it must not contain secrets.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "LimitExceeded",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
    "UnknownType",
    "WirehubError",
]


class WirehubError(Exception):
    """Base class: carries a wire ``code``, a readable message and extra fields."""

    code: str = "internal"
    http_status: int = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.fields)
        return body


class BadRequest(WirehubError):
    code = "bad_request"
    http_status = 400


class UnknownType(BadRequest):
    code = "unknown_type"


class NotFound(WirehubError):
    code = "not_found"
    http_status = 404


class Unauthorized(WirehubError):
    code = "unauthorized"
    http_status = 401


class Forbidden(WirehubError):
    code = "forbidden"
    http_status = 403


class TooLarge(WirehubError):
    code = "too_large"
    http_status = 413


class LimitExceeded(WirehubError):
    code = "limit_exceeded"
    http_status = 429


class RateLimited(WirehubError):
    code = "rate_limited"
    http_status = 429


class Conflict(WirehubError):
    code = "conflict"
    http_status = 409


class ConfigError(WirehubError):
    code = "config_error"

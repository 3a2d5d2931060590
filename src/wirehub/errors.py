"""The one error tree of wirehub.

Every error a peer can cause maps to a wire ``code`` that ends up in an
``error`` frame (WebSocket), a JSON body (HTTP) or an event (TCP bridges);
every error class of the package is here, including the ones its parts raise
(re-exported where they are used: ``wirehub.services``, ``wirehub.bridges``,
``wirehub.client``, ``wirehub.jobs.local``, ``wirehub.jobs.buffer``,
``wirehub.web.handshake``)::

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
    ├── ConfigError              config_error    invalid settings, caught at start
    ├── CodecError               codec_error     a TCP bridge's decoder/encoder failed on a frame
    ├── ServiceError             service_error   a service could not be started or made ready
    ├── JobFailure               job_error       a job's own exception, across a thread/process
    ├── BufferFull               buffer_full     a sync ctx.output on the loop found its buffer full
    ├── Refused                  (its error's)   a WebSocket handshake refused with an HTTP status
    ├── StartInterrupted         interrupted     a shutdown signal arrived while the hub started
    ├── Disconnected             disconnected    client: the socket went away before the reply
    │   └── TokenRevoked         revoked         client: the hub revoked the token (4403)
    └── JobFailed                job_failed      client: the job ended failed or cancelled

Raise them from handlers (``@hub.on``) to answer a peer with that code; the
message is shown to the peer as is, so it must not contain secrets.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "BufferFull",
    "CodecError",
    "ConfigError",
    "Conflict",
    "Disconnected",
    "Forbidden",
    "JobFailed",
    "JobFailure",
    "LimitExceeded",
    "NotFound",
    "RateLimited",
    "Refused",
    "ServiceError",
    "StartInterrupted",
    "TokenRevoked",
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


class CodecError(WirehubError):
    """A TCP bridge's decoder or encoder failed on one frame: that frame, never the bridge."""

    code = "codec_error"
    http_status = 400


class ServiceError(WirehubError):
    """A service could not be started or made ready; the message names it and its last lines."""

    code = "service_error"
    http_status = 503


class JobFailure(WirehubError):
    """A job's own exception, carried across a thread or process boundary.

    ``type_name`` is the original exception's class name (``ValueError``,
    ``WorkerLost``…), which a job's ``error`` reports alongside the message.
    """

    code = "job_error"

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


class BufferFull(WirehubError, RuntimeError):
    """A sync ``ctx.output`` on the event loop found the job's buffer full past its slack.

    Raised inside the job (which fails with it unless it catches it): an async
    job must ``await ctx.aoutput(...)``, which waits for room. Also a
    ``RuntimeError``, as it was before it joined the tree (re-exported by
    ``wirehub.jobs.buffer``).
    """

    code = "buffer_full"
    http_status = 503


class Refused(WirehubError):
    """A WebSocket handshake refused before it was accepted: an HTTP ``status`` and why.

    Its ``code`` and wire form are those of ``error``, the error behind the
    refusal (``Unauthorized`` for 401, ``Forbidden`` for 403…).
    """

    def __init__(self, status: int, error: WirehubError) -> None:
        super().__init__(error.message)
        self.status = status
        self.http_status = status
        self.error = error
        self.code = error.code

    def to_wire(self) -> dict[str, Any]:
        return self.error.to_wire()

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers: a 401 names the scheme (``WWW-Authenticate: Bearer``)."""
        if self.status == 401:
            return [(b"www-authenticate", b'Bearer realm="wirehub"')]
        return []


class StartInterrupted(WirehubError):
    """A shutdown signal arrived before the hub finished starting (re-exported by wirehub.hub)."""

    code = "interrupted"


class Disconnected(WirehubError):
    """Client: the connection went away before the hub answered (or the client is closed)."""

    code = "disconnected"


class TokenRevoked(Disconnected):
    """Client: the hub revoked this client's token or subject (close 4403): no reconnect."""

    code = "revoked"


class JobFailed(WirehubError):
    """Client: the job ended ``failed`` (or ``cancelled``); ``state`` and ``error`` tell why."""

    code = "job_failed"

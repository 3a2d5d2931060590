"""WebSocket handshake checks: origin, connections per IP, credentials, client id.

Run before the connection is accepted, so a refused peer never reaches a room.
A refusal is an HTTP response through the ASGI denial-response extension
(status and a JSON body ``{"detail": {"code", "message"}}``); servers without
that extension close with 1008 before the handshake completes (the client sees
HTTP 403).

=========  ==============  ==================================================
status     code            when
=========  ==============  ==================================================
401        unauthorized    no token, a bad signature, an expired or revoked token...
403        forbidden       ``Origin`` not allowed; ``client_id`` is not the token's ``sub``
429        limit_exceeded  too many open connections from this IP address
=========  ==============  ==================================================
"""

from __future__ import annotations

import fnmatch
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wirehub.auth import Authorizer, Principal
from wirehub.errors import Forbidden, LimitExceeded, Refused, Unauthorized

__all__ = ["Admission", "HandshakeGate", "Refused", "bearer_token", "origin_allowed"]

logger = logging.getLogger("wirehub.ws")


@dataclass(frozen=True)
class Admission:
    """A handshake let in: the client id to use and who it is (None: auth off)."""

    client_id: str | None
    principal: Principal | None
    ip: str


def bearer_token(headers: Iterable[tuple[bytes, bytes]], query: dict[str, list[str]]) -> str:
    """``Authorization: Bearer <token>``, else the ``token`` query parameter, else ''."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credential.strip()
    return (query.get("token") or [""])[0]


def origin_allowed(origin: str | None, allowed: list[str] | tuple[str, ...]) -> bool:
    """Empty ``allowed``: any; a missing Origin (non-browser client) is allowed."""
    if not allowed or origin is None or "*" in allowed:
        return True
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in allowed)


class HandshakeGate:
    """Admits or refuses WebSocket handshakes; counts open connections per IP."""

    def __init__(
        self,
        auth: Authorizer,
        *,
        allowed_origins: list[str] | tuple[str, ...] = (),
        max_per_ip: int = 0,
    ) -> None:
        self.auth = auth
        self.allowed_origins = tuple(allowed_origins)
        self.max_per_ip = max_per_ip
        self.open: Counter[str] = Counter()
        self.refused: Counter[int] = Counter()

    def admit(self, scope: dict[str, Any], query: dict[str, list[str]]) -> Admission:
        """Check the handshake; raise :class:`Refused`. Call :meth:`release` when it ends."""
        client = scope.get("client") or ("?", 0)
        ip = str(client[0])
        try:
            headers = scope.get("headers") or []
            if self.allowed_origins:
                origin = next((v.decode("latin-1") for k, v in headers if k == b"origin"), None)
                if not origin_allowed(origin, self.allowed_origins):
                    raise Refused(403, Forbidden(f"origin {origin!r} is not allowed"))
            if self.max_per_ip and self.open[ip] >= self.max_per_ip:
                raise Refused(
                    429,
                    LimitExceeded(
                        f"at most {self.max_per_ip} connections per IP address",
                        limit=self.max_per_ip,
                    ),
                )
            asked = (query.get("client_id") or [""])[0] or None
            principal = None
            if self.auth.required:
                try:
                    principal = self.auth.authenticate(bearer_token(headers, query), asked)
                except Unauthorized as exc:
                    raise Refused(401, exc) from None
                if principal.via == "jwt":
                    if asked is not None and asked != principal.client_id:
                        raise Refused(
                            403, Forbidden("client_id does not match the token's subject")
                        )
                    asked = principal.client_id
        except Refused as refused:
            self.refused[refused.status] += 1
            logger.info(
                "handshake from %s refused (%d %s): %s",
                ip,
                refused.status,
                refused.error.code,
                refused.error.message,
            )
            raise
        self.open[ip] += 1
        return Admission(asked, principal, ip)

    def release(self, admission: Admission) -> None:
        left = self.open[admission.ip] - 1
        if left > 0:
            self.open[admission.ip] = left
        else:
            del self.open[admission.ip]

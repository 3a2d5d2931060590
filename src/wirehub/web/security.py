"""HTTP API protection: a bearer dependency on every ``/api`` route, and CORS.

When ``[auth]`` is on (``mode = "jwt"`` or ``api_keys`` given) each ``/api``
request needs ``Authorization: Bearer <API key or admin JWT>``:

* no credential, an unknown key, a bad, expired or revoked token → **401**
  ``{"detail": {"code": "unauthorized", "message": ...}}`` with ``WWW-Authenticate: Bearer``;
* a valid token without ``admin: true`` → **403** ``{"detail": {"code": "forbidden", ...}}``.

The OpenAPI schema then declares the ``bearer`` security scheme on those
routes. ``/healthz``, ``/readyz`` and ``/metrics`` stay open (probes and
scrapers carry no credentials; ``/metrics`` shows counts, never payloads or
secrets — block it at the proxy if even counts are private).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wirehub.auth import Principal
from wirehub.errors import Forbidden, Unauthorized, WirehubError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wirehub.hub import Hub

__all__ = ["add_cors", "api_dependencies"]

_bearer = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="API key or JWT",
    description="An API key from `[auth] api_keys`, or a JWT with `admin: true`.",
    auto_error=False,
)


def _refuse(exc: WirehubError) -> HTTPException:
    headers = {"WWW-Authenticate": 'Bearer realm="wirehub"'} if exc.http_status == 401 else None
    return HTTPException(status_code=exc.http_status, detail=exc.to_wire(), headers=headers)


def api_dependencies(hub: Hub) -> list[Any]:
    """``dependencies=`` for the ``/api`` routers: none when the API is open."""
    auth = hub.auth
    if not auth.api_protected:
        return []

    async def require_admin(
        credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
    ) -> Principal:
        if credentials is None:
            raise _refuse(
                Unauthorized("an API key or admin token is required (Authorization: Bearer)")
            )
        try:
            principal = auth.authenticate(credentials.credentials)
        except Unauthorized as exc:
            raise _refuse(exc) from None
        if not principal.admin:
            raise _refuse(Forbidden("this token has no admin grant"))
        return principal

    return [Depends(require_admin)]


def add_cors(app: FastAPI, origins: list[str], *, allow_credentials: bool = False) -> None:
    """Let browsers on ``origins`` call the HTTP API (no-op when the list is empty)."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=allow_credentials,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )

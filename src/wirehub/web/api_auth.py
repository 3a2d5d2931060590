"""``POST /api/auth/revoke``: close a subject's or a token's connections on every node.

Mounted on the ``/api`` router (``web/api.py``), so it carries the same bearer
check as every ``/api`` route: an API key or an admin JWT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from wirehub.core.protocol import CLIENT_ID_RE
from wirehub.errors import WirehubError
from wirehub.web.errors import http_error

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["RevokeBody", "RevokeResult", "add_revoke_route"]


class RevokeBody(BaseModel):
    """Exactly one of ``sub`` and ``jti``."""

    sub: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Revoke every token of this subject issued until now (by `iat`)",
    )
    jti: str | None = Field(None, min_length=1, max_length=256, description="Revoke this token id")
    until: float | None = Field(
        None,
        gt=0,
        description=(
            "Unix time until which the revocation is kept. Default: the token's `exp` when a "
            "connection on this node holds it, else now + `auth.revoke_ttl`"
        ),
    )

    @model_validator(mode="after")
    def _one(self) -> RevokeBody:
        if (self.sub is None) == (self.jti is None):
            raise ValueError("give exactly one of 'sub' and 'jti'")
        if self.sub is not None and not CLIENT_ID_RE.match(self.sub):
            raise ValueError("'sub' is not a valid client id")
        return self


class RevokeResult(BaseModel):
    #: ``sub`` or ``jti``.
    kind: str
    value: str
    #: Unix time until which the tokens it names are refused.
    until: float
    #: Connections closed (4403) on the node that took the request; the other nodes
    #: close theirs when the notice reaches them.
    closed: int
    #: True: stored in Redis and sent to every node; False: Redis is out of reach (this
    #: node applied it and writes it when Redis is back); null: one node (embedded mode).
    shared: bool | None = None


def add_revoke_route(router: APIRouter, hub: Hub) -> None:
    """Add ``POST /auth/revoke`` to the ``/api`` router."""

    @router.post("/auth/revoke", tags=["auth"])
    async def revoke(body: RevokeBody) -> RevokeResult:
        """Close every connection of a subject or token (4403) and refuse it from now on."""
        try:
            revocation, closed, shared = await hub.tokens.revoke(
                sub=body.sub, jti=body.jti, until=body.until
            )
        except WirehubError as exc:
            raise http_error(exc) from None
        return RevokeResult(
            kind=revocation.kind,
            value=revocation.value,
            until=revocation.until,
            closed=closed,
            shared=shared,
        )

"""WirehubError → HTTP error with a JSON body ``{"detail": {"code", "message"}}``."""

from __future__ import annotations

from fastapi import HTTPException

from wirehub.errors import WirehubError

__all__ = ["http_error"]


def http_error(exc: WirehubError) -> HTTPException:
    return HTTPException(status_code=exc.http_status, detail=exc.to_wire())

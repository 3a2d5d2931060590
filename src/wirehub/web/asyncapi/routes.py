"""``/asyncapi.json``, the ``/asyncapi`` page and its script, on every hub router.

Like ``/static/wirehub.js`` they come with ``hub.router``, so an embedded app
describes its real-time API without mounting anything. They are open whatever
``[auth]`` says, as FastAPI's ``/openapi.json`` is: the document describes
frames and models, never data. They stay out of the OpenAPI schema (they are
about the WebSocket, not the HTTP API).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from wirehub.web.asyncapi.document import DocumentCache, Server
from wirehub.web.pages import base_path, page

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["PAGE", "SCRIPT", "build_asyncapi_router", "request_server"]

_STATIC = Path(__file__).resolve().parents[1] / "static"
#: The page and its script (package data in web/static, like the dashboard's).
PAGE = _STATIC / "asyncapi.html"
SCRIPT = _STATIC / "asyncapi.js"


def request_server(request: Request) -> Server:
    """The server block for this request: the host the client used, ``wss`` behind TLS,
    and the path the app serves the hub under (a router prefix, a mount, a root path)."""
    host = request.headers.get("host") or request.url.netloc
    secure = request.url.scheme in ("https", "wss")
    return Server(host[:255], "wss" if secure else "ws", base_path(request, "/asyncapi.json"))


def build_asyncapi_router(hub: Hub) -> APIRouter:
    """The three routes; the document is built once and again only after new registrations."""
    router = APIRouter(include_in_schema=False)
    cache = DocumentCache(hub)

    @router.get("/asyncapi.json")
    async def asyncapi_json(request: Request) -> Response:
        """The AsyncAPI 3.0.0 document of the WebSocket API."""
        body = orjson.dumps(cache.get(request_server(request)))
        return Response(body, media_type="application/json")

    @router.get("/asyncapi")
    async def asyncapi_page(request: Request) -> HTMLResponse:
        """The document, rendered in the browser (no network beyond this hub)."""
        return page(PAGE, request)

    @router.get("/static/asyncapi.js")
    async def asyncapi_script() -> FileResponse:
        return FileResponse(SCRIPT, media_type="text/javascript")

    return router

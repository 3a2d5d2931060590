"""Everything the hub serves, as one APIRouter for ``app.include_router(hub.router)``.

``/ws``, ``/api/*``, ``/healthz``, ``/readyz``, ``/metrics`` and the browser
client ``/static/wirehub.js`` (docs/clients.md), so an embedded app serves the
documented client without mounting anything. With ``router_pages = true`` the
router also carries the dashboard (``/``), the chat (``/chat``), their static
files and ``/favicon.ico``; ``create_app`` adds those itself when ``demo`` is on.
Every route answers errors as ``{"detail": {"code", "message"}}`` (web/errors.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.routing import WebSocketRoute

from wirehub.errors import NotFound
from wirehub.web.api import build_api_router
from wirehub.web.api_bridges import build_bridges_router
from wirehub.web.api_jobs import build_jobs_router
from wirehub.web.api_services import build_services_router
from wirehub.web.asyncapi import build_asyncapi_router
from wirehub.web.errors import ERROR_RESPONSES, http_error, shape_errors
from wirehub.web.health import build_health_router
from wirehub.web.pages import page
from wirehub.web.security import api_dependencies
from wirehub.web.sse import build_sse_router
from wirehub.web.ws import WebSocketEndpoint

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["STATIC", "build_router", "client_router", "pages_router"]

STATIC = Path(__file__).parent / "static"
#: What ``/static/{name}`` may serve: the files shipped in web/static, by name only.
_FILES = frozenset(p.name for p in STATIC.iterdir() if p.is_file() and not p.name.startswith("."))


def build_router(hub: Hub) -> APIRouter:
    router = APIRouter()
    router.routes.append(WebSocketRoute("/ws", WebSocketEndpoint(hub), name="wirehub_ws"))
    # Every /api router gets the bearer check (empty when [auth] is off); health stays open.
    api = api_dependencies(hub)
    # SSE first: its routes take client tokens (the /ws checks), not the admin check,
    # and /api/rooms/{room}/events must win over /api/rooms/{room:path} (web/sse.py).
    router.include_router(build_sse_router(hub), responses=ERROR_RESPONSES)
    for build in (build_api_router, build_bridges_router, build_jobs_router, build_services_router):
        router.include_router(shape_errors(build(hub)), dependencies=api, responses=ERROR_RESPONSES)
    router.include_router(shape_errors(build_health_router(hub)))
    router.include_router(client_router())
    # /asyncapi.json and the /asyncapi page: the WebSocket API described (web/asyncapi/).
    router.include_router(shape_errors(build_asyncapi_router(hub)))
    if hub.settings.router_pages:
        router.include_router(pages_router())
    return router


def client_router() -> APIRouter:
    """``/static/wirehub.js``: the browser client, for any app that includes the hub."""
    router = APIRouter(include_in_schema=False)

    @router.get("/static/wirehub.js")
    async def wirehub_js() -> FileResponse:
        return FileResponse(STATIC / "wirehub.js", media_type="text/javascript")

    return shape_errors(router)


def pages_router() -> APIRouter:
    """The dashboard, the chat page, their static files and the favicon."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index(request: Request) -> HTMLResponse:
        """The live dashboard (a wirehub client of the system rooms)."""
        return page(STATIC / "index.html", request)

    @router.get("/chat")
    async def chat(request: Request) -> HTMLResponse:
        """The chat page: rooms, presence, history, direct messages, recovery."""
        return page(STATIC / "chat.html", request)

    @router.get("/favicon.ico")
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    @router.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        if name not in _FILES:
            raise http_error(NotFound(f"no static file '{name}'"))
        return FileResponse(STATIC / name, media_type=_media_type(name))

    return shape_errors(router)


def _media_type(name: str) -> str | None:
    # Explicit for the types a browser refuses when they are guessed wrong (modules).
    return {".js": "text/javascript", ".css": "text/css", ".ico": "image/x-icon"}.get(
        Path(name).suffix
    )

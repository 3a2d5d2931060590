"""``create_app``: the standalone FastAPI app, built exactly as a library user would."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from wirehub.hub import Hub
from wirehub.settings import Settings
from wirehub.web.security import add_cors
from wirehub.web.ws import WebSocketShortcut

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings | Hub | None = None) -> FastAPI:
    hub = settings if isinstance(settings, Hub) else Hub(settings)
    app = FastAPI(title="wirehub", version="0.1.0", lifespan=hub.lifespan)
    app.state.hub = hub
    app.include_router(hub.router)
    # /ws straight from the server, past routing and the exception middleware's
    # per-send wrapper: every delivery goes through this app's ``send``.
    endpoint = next(r.app for r in hub.router.routes if getattr(r, "name", "") == "wirehub_ws")
    app.add_middleware(WebSocketShortcut, endpoint=endpoint, path="/ws")

    auth = hub.settings.auth
    add_cors(app, auth.cors_origins, allow_credentials=auth.cors_allow_credentials)
    if hub.settings.demo:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            """The live dashboard (a wirehub client of the system rooms)."""
            return FileResponse(STATIC / "index.html")

        @app.get("/chat", include_in_schema=False)
        async def chat() -> FileResponse:
            """The chat page: rooms, presence, history, direct messages, recovery."""
            return FileResponse(STATIC / "chat.html")

    return app

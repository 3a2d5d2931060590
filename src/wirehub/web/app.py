"""``create_app``: the standalone FastAPI app, built exactly as a library user would.

It is ``FastAPI(lifespan=hub.lifespan)`` plus ``include_router(hub.router)``, the
``/ws`` shortcut, CORS, the error handlers that give the whole app one error
shape, and (with ``demo``) the dashboard and chat pages.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI

from wirehub.hub import Hub
from wirehub.settings import Settings
from wirehub.web.errors import install_error_handlers
from wirehub.web.routes import STATIC, pages_router
from wirehub.web.security import add_cors
from wirehub.web.ws import WebSocketShortcut

__all__ = ["STATIC", "create_app", "served_app"]

#: The OpenAPI page's description: the HTTP API is here, the WebSocket API one link away.
DOCS_DESCRIPTION = (
    "The hub's HTTP API. The WebSocket API (`/ws`: every frame, typed handler and typed "
    "room) is described by its [AsyncAPI document](/asyncapi) "
    "([asyncapi.json](/asyncapi.json))."
)


def create_app(settings: Settings | Hub | None = None) -> FastAPI:
    """The standalone app that ``wirehub serve`` runs, built as a library user would.

    A Hub (built from ``settings``, or the one given) with its lifespan and router,
    ``/ws`` on its fast path, CORS from ``[auth]``, one ``{"detail": {code, message}}``
    error shape for every route, and with ``demo`` on the dashboard at ``/`` and the
    chat at ``/chat``. The hub is ``app.state.hub``.
    """
    hub = settings if isinstance(settings, Hub) else Hub(settings)
    app = FastAPI(
        title="wirehub",
        version="0.1.0",
        description=DOCS_DESCRIPTION,
        lifespan=hub.lifespan,
    )
    app.state.hub = hub
    app.include_router(hub.router)
    # /ws straight from the server, past routing and the exception middleware's
    # per-send wrapper: every delivery goes through this app's ``send``.
    # cast: routes are typed BaseRoute, which declares no ``app``; the WebSocket route has one.
    routes = cast("list[Any]", hub.router.routes)
    endpoint = next(r.app for r in routes if getattr(r, "name", "") == "wirehub_ws")
    app.add_middleware(WebSocketShortcut, endpoint=endpoint, path="/ws")
    app.state.ws_endpoint = endpoint

    auth = hub.settings.auth
    add_cors(app, auth.cors_origins, allow_credentials=auth.cors_allow_credentials)
    # One error shape: unknown routes, wrong methods and 422s answer
    # {"detail": {"code", "message"}} like the hub's own errors.
    install_error_handlers(app)
    if hub.settings.demo and not hub.settings.router_pages:
        app.include_router(pages_router())  # with router_pages, hub.router has them
    return app


def served_app(app: FastAPI) -> WebSocketShortcut:
    """``app`` with ``/ws`` taken before FastAPI's middleware stack: what ``wirehub serve`` runs.

    Every open connection's app coroutine is suspended inside the chain of
    ASGI callables above the endpoint, one frame each (FastAPI, Starlette, the
    error middleware, CORS...): about 1.5 KiB per idle connection that nothing
    uses on a WebSocket once it is accepted. Outside them, the chain is the
    server's proxy-headers wrapper and the endpoint. The shortcut inside
    ``app`` stays for servers that run ``create_app`` directly.
    """
    return WebSocketShortcut(app, endpoint=app.state.ws_endpoint, path="/ws")

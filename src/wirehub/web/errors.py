"""One error shape over HTTP: ``{"detail": {"code", "message", ...fields}}``.

The same ``code`` and ``message`` as the WebSocket ``error`` frame and the CLI's
``error:`` line, from the one error tree (:mod:`wirehub.errors`). Three sources
of HTTP errors are brought to that shape:

* a :class:`~wirehub.errors.WirehubError` raised by a route: :func:`http_error`;
* a request FastAPI cannot validate (422): ``code`` ``bad_request``, one
  ``errors`` entry ``{field, message}`` per bad field (as ``POST /api/jobs``
  reports bad job arguments);
* an ``HTTPException`` with a plain text detail (unknown route 404, wrong method
  405, body too large…): a ``code`` from its status (:data:`STATUS_CODES`).

Every route of ``hub.router`` answers its own errors in this shape, whatever
app includes it (:func:`shape_errors`); :func:`install_error_handlers` gives the
rest of an app the same shape (``create_app`` installs them, so its unknown
routes answer ``{"detail": {"code": "not_found", ...}}`` too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from wirehub.errors import WirehubError

__all__ = [
    "ERROR_RESPONSES",
    "STATUS_CODES",
    "ErrorBody",
    "ErrorDetail",
    "ShapedRoute",
    "error_response",
    "http_error",
    "install_error_handlers",
    "shape_errors",
]

logger = logging.getLogger("wirehub.web")

#: The ``code`` of an HTTP error that carries no wirehub code of its own.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "bad_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    """What went wrong: the wire ``code``, a readable ``message``, and extra fields."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every HTTP error body of the hub."""

    detail: ErrorDetail


#: ``responses=`` for the hub's routes: every 4xx is an :class:`ErrorBody` (OpenAPI).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": ErrorBody,
        "description": 'An error: `{"detail": {"code", "message", ...}}` (docs/protocol.md)',
    }
}


def http_error(exc: WirehubError) -> HTTPException:
    """Raise this from a route: the error's status, and its wire body under ``detail``."""
    return HTTPException(status_code=exc.http_status, detail=exc.to_wire())


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    return JSONResponse(
        {"detail": {"code": code, "message": message, **fields}},
        status_code=status,
        headers=headers,
    )


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors()
    ]
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return error_response(422, "bad_request", f"invalid request: {text}", errors=errors)


def _http_response(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code < 400 or exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail
    if isinstance(detail, dict) and isinstance(detail.get("code"), str):
        body = detail  # already a wirehub error body (http_error, the API key check)
    else:
        code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 404 and detail == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(detail)
        body = {"code": code, "message": message}
    return JSONResponse({"detail": body}, status_code=exc.status_code, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _validation_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return _http_response(request, exc)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback (and re-raises for the server); the client
    # gets the shape, never the exception text.
    return error_response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Give every error of ``app`` the hub's shape: 422s, unknown routes, 405s, 500s."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


class ShapedRoute(APIRoute):
    """An APIRoute whose validation and plain HTTP errors have the hub's shape.

    Route-level, so ``app.include_router(hub.router)`` keeps the documented
    body for the hub's routes without touching the app's own handlers.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def shaped(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation_response(exc)
            except StarletteHTTPException as exc:
                return _http_response(request, exc)

        return shaped


def shape_errors(router: APIRouter) -> APIRouter:
    """Make every route of ``router`` a :class:`ShapedRoute` (before it is included).

    The routers are built in their own modules with plain ``APIRouter()``; a
    route's class only adds ``get_route_handler``, which FastAPI calls when the
    router is included, so the class is switched here in one place.
    """
    for route in router.routes:
        if isinstance(route, APIRoute) and not isinstance(route, ShapedRoute):
            route.__class__ = ShapedRoute
    return router

"""The hub's HTML pages, whatever path the app serves the hub under.

An app may include ``hub.router`` under a prefix (``include_router(hub.router,
prefix="/realtime")``), mount an app that holds it, or sit behind a proxy with
a ``root_path``. Every link, script and request in the pages is therefore
relative to the page itself, and ``wirehub.js`` finds ``/ws`` beside the
``/static`` it was served from. The one link that is not the hub's — the
app's OpenAPI docs — is filled in per request from the app that serves the
page, and hidden when that app has none.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse

__all__ = ["DOCS_LINK", "base_path", "page"]

#: How the page files link the app's docs; replaced per request.
DOCS_LINK = 'href="/docs"'


@cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def page(path: Path, request: Request) -> HTMLResponse:
    """The page at ``path`` with its docs link pointing at the serving app's docs."""
    text = _text(path)
    if DOCS_LINK in text:
        docs = getattr(request.app, "docs_url", None)
        url = html.escape(f"{request.scope.get('root_path', '')}{docs}")
        link = f'href="{url}"' if docs else 'href="" hidden'
        text = text.replace(DOCS_LINK, link)
    return HTMLResponse(text)


def base_path(request: Request, own: str) -> str:
    """The path the hub's routes sit under, from a request to the route at ``own``."""
    path = request.url.path
    return path[: -len(own)] if path.endswith(own) else ""

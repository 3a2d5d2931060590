"""The AsyncAPI 3.0.0 document of the hub's WebSocket API, and the page that shows it.

``GET /asyncapi.json`` (:func:`~wirehub.web.asyncapi.routes.build_asyncapi_router`),
``GET /asyncapi`` (a static page that renders it, offline) and ``wirehub asyncapi``
all use :mod:`wirehub.web.asyncapi.document`, built from the frames of
:mod:`wirehub.web.asyncapi.frames` and the hub's typed handlers and rooms.
"""

from wirehub.web.asyncapi.document import DocumentCache, Server, build_document, document_for
from wirehub.web.asyncapi.routes import build_asyncapi_router

__all__ = ["DocumentCache", "Server", "build_asyncapi_router", "build_document", "document_for"]

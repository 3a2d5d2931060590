"""What ``wirehub serve``'s server needs of ``uvicorn.Server`` beyond its documented API.

uvicorn documents ``Config``, ``Server(config)``, ``run()`` and ``serve()``.
:class:`wirehub.server.HubServer` also overrides four of ``Server``'s
lifecycle methods (:data:`SERVER_METHODS`, in the package's ``HOOKS``) and sets
its three flags (``started``, ``should_exit``, ``force_exit``). Everything else
it needs of uvicorn's inner state (the open connections, the listening
servers, the captured signals, the lifespan, the "running on" line) is one
function here, so that a uvicorn upgrade is reviewed in this package only;
``tests/unit/test_uvicorn_seam.py`` checks that no module outside it reaches
further, and that the attributes in :data:`SERVER_ATTRIBUTES` still exist.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence
from typing import Final

import uvicorn

__all__ = [
    "SERVER_ATTRIBUTES",
    "SERVER_METHODS",
    "finish_lifespan",
    "forget_captured_signals",
    "log_started",
    "stop_listening",
    "websocket_transports",
]

#: ``uvicorn.Server`` methods that HubServer overrides or calls (checked with ``HOOKS``).
SERVER_METHODS: Final = (
    "startup",
    "shutdown",
    "handle_exit",
    "capture_signals",
    "_log_started_message",
)

#: Instance attributes of a new ``uvicorn.Server`` that this module and HubServer read.
SERVER_ATTRIBUTES: Final = (
    "config",
    "server_state",
    "started",
    "should_exit",
    "force_exit",
    "_captured_signals",
)

#: uvicorn's WebSocket protocol classes, by module: a connection of one of them
#: (or of a subclass, like ours) can only exist once its module is imported, so
#: they are looked up in ``sys.modules`` rather than imported (the legacy one
#: warns at import, wsproto is optional).
_WEBSOCKET_CLASSES: Final = (
    ("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol"),
    ("uvicorn.protocols.websockets.websockets_impl", "WebSocketProtocol"),
    ("uvicorn.protocols.websockets.wsproto_impl", "WSProtocol"),
)


def _websocket_classes() -> tuple[type, ...]:
    found: list[type] = []
    for module_name, name in _WEBSOCKET_CLASSES:
        module = sys.modules.get(module_name)
        cls = getattr(module, name, None) if module is not None else None
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def websocket_transports(server: uvicorn.Server) -> list[asyncio.Transport]:
    """The transports of the WebSocket connections ``server`` holds (not plain HTTP ones).

    A connection leaves uvicorn's set when its socket is gone, so this is what
    is still open, closing or not.
    """
    classes = _websocket_classes()
    if not classes:
        return []
    found: list[asyncio.Transport] = []
    for connection in list(server.server_state.connections):
        if isinstance(connection, classes):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                found.append(transport)
    return found


def forget_captured_signals(server: uvicorn.Server) -> None:
    """Make ``capture_signals`` not re-raise what it caught: a handled SIGTERM is a clean exit."""
    server._captured_signals.clear()


def stop_listening(server: uvicorn.Server) -> None:
    """Close ``server``'s listening sockets (none yet when the start did not get that far)."""
    for listener in getattr(server, "servers", []):
        listener.close()


def log_started(server: uvicorn.Server, sockets: Sequence[socket.socket]) -> None:
    """uvicorn's own "Uvicorn running on ..." line, for when HubServer says it is up."""
    server._log_started_message(sockets)


async def finish_lifespan(server: uvicorn.Server) -> None:
    """End the app's lifespan task cleanly (uvicorn skips it on a forced exit)."""
    lifespan = getattr(server, "lifespan", None)
    if lifespan is not None:
        await lifespan.shutdown()

"""Hand the uvicorn that runs an embedded hub the protocol classes ``wirehub serve`` uses.

uvicorn reads ``config.http_protocol_class`` for every connection it accepts,
and the HTTP protocol reads ``config.ws_protocol_class`` and the ``ws_*``
options for every upgrade; the lifespan runs before uvicorn accepts anything.
So the hub's lifespan (src/wirehub/embedded.py) can give a plain ``uvicorn
app:app`` — alone, with ``--workers``, or as gunicorn's worker — the bounded
request head, the bounded control frames and the frame-once writer, configured
from ``[server]`` and counted in the hub's ``/metrics``.

What the user chose on uvicorn's command line wins: only uvicorn's defaults
(``--http auto`` with httptools, ``--ws auto``) and wirehub's own classes
given by import string (``--ws wirehub.web.uvicorn_protocols:RawSendProtocol``)
are replaced; anything else is left, and named in the hub's start WARNING.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from wirehub.embedded import CONTROL_BOUNDS, FRAME_ONCE, HEAD_BOUNDS
from wirehub.web.uvicorn_protocols.http import WirehubHttpProtocol
from wirehub.web.uvicorn_protocols.sansio import RawSendProtocol, WirehubWebSocketProtocol

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["UVICORN_WS_MAX_SIZE", "adopt"]

#: uvicorn's own default for ``--ws-max-size`` (16 MiB).
UVICORN_WS_MAX_SIZE = 16 * 1024 * 1024


def adopt(hub: Hub, config: Any) -> list[str]:
    """Give ``config`` (a loaded ``uvicorn.Config``) the hub's protocols; what is still missing."""
    # Imported here: wirehub.server imports this package.
    from wirehub.server import http_protocol, ws_protocol

    settings = hub.settings
    missing: list[str] = []

    # 1. The HTTP protocol: httptools (uvicorn's default when installed) or ours.
    http = config.http_protocol_class
    if http is WirehubHttpProtocol or http is HttpToolsProtocol:
        config.http_protocol_class = http_protocol(settings, hub.node)
    elif not (isinstance(http, type) and issubclass(http, WirehubHttpProtocol)):
        missing.append(HEAD_BOUNDS)

    # 2. The WebSocket protocol: `server.ws` for uvicorn's default, ours as given.
    ws = config.ws_protocol_class
    adopted = True
    if ws is RawSendProtocol:
        config.ws_protocol_class = ws_protocol(_with_ws(settings, "wirehub"), hub.node)
    elif ws is WirehubWebSocketProtocol:
        config.ws_protocol_class = ws_protocol(_with_ws(settings, "websockets-sansio"), hub.node)
    elif config.ws == "auto" and ws is WebSocketsSansIOProtocol:
        config.ws_protocol_class = ws_protocol(settings, hub.node)
    elif isinstance(ws, type) and issubclass(ws, WirehubWebSocketProtocol):
        pass  # already configured (another hub in this process)
    else:
        adopted = False
        missing += [CONTROL_BOUNDS, FRAME_ONCE]
    if adopted:
        # The frame-once writer declines on a compressed connection: the hub's choice.
        config.ws_per_message_deflate = settings.server.ws_per_message_deflate

    # 3. The frame cap at the wire: the hub's, or the server's when it is lower
    #    (web/ws.py closes 1009 past the hub's on any server anyway).
    config.ws_max_size = min(config.ws_max_size, settings.server.ws_max_size)
    return missing


def _with_ws(settings: Any, name: str) -> Any:
    return settings.model_copy(update={"server": settings.server.model_copy(update={"ws": name})})

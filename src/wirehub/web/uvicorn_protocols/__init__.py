"""uvicorn protocol classes bounded from the first byte: the one package using uvicorn internals.

uvicorn builds one protocol object per connection: an HTTP protocol first,
which hands a WebSocket upgrade to a WebSocket protocol. Both are subclassed
in this package and nowhere else, so a uvicorn upgrade is reviewed in one
place; ``tests/unit/test_wire_limits.py`` fails loudly when the installed
uvicorn is outside :data:`SUPPORTED_UVICORN` or a method in :data:`HOOKS` is
gone.

=====================  ============================================================
module                 what
=====================  ============================================================
``http``               :class:`WirehubHttpProtocol`, every ``server.ws``: the request
                       head is bounded as it arrives (414, 431) and timed (408)
``sansio``             :class:`WirehubWebSocketProtocol` (``websockets-sansio``) and
                       :class:`RawSendProtocol` (``wirehub``, ``auto``): control
                       frames rate-limited and within the outbound bound
``optional``           ``websockets`` (legacy) and ``wsproto``, imported when chosen
``embed``              ``adopt``: hand an embedded hub's uvicorn these classes
``server_hooks``       what ``wirehub serve``'s ``HubServer`` needs of
                       ``uvicorn.Server`` beyond its documented API
=====================  ============================================================

No module outside this package imports a uvicorn submodule or touches
``uvicorn.Server``'s inner state (``tests/unit/test_uvicorn_seam.py``).

The classes take their bounds as class attributes: :func:`ws_protocol_class`
and :func:`http_protocol_class` build a subclass per configuration, holding a
:class:`~wirehub.web.wirelimits.WireLimits` and the
:class:`~wirehub.web.wirelimits.WireCounters` where refusals are counted.

websockets' own handshake parser limits are module globals
(``websockets.http11.MAX_LINE_LENGTH``, ``MAX_NUM_HEADERS``) read at parse time;
:func:`ws_protocol_class` raises them (never lowers them) to what the
``WireLimits`` let through, process-wide.
"""

from __future__ import annotations

import asyncio
from typing import Final

import uvicorn
import websockets.http11
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from wirehub.web.uvicorn_protocols.http import WirehubHttpProtocol
from wirehub.web.uvicorn_protocols.optional import legacy_class, raise_parser_limits, wsproto_class
from wirehub.web.uvicorn_protocols.sansio import RawSendProtocol, WirehubWebSocketProtocol
from wirehub.web.uvicorn_protocols.server_hooks import SERVER_METHODS
from wirehub.web.wirelimits import LocalCounters, WireCounters, WireLimits

__all__ = [
    "HOOKS",
    "SUPPORTED_UVICORN",
    "RawSendProtocol",
    "WirehubHttpProtocol",
    "WirehubWebSocketProtocol",
    "http_protocol_class",
    "uvicorn_version",
    "ws_protocol_class",
]

#: uvicorn versions these classes are tested against: [low, high), as pinned in pyproject.toml.
SUPPORTED_UVICORN: Final = ((0, 30), (0, 55))

#: (class, method) pairs of uvicorn and websockets that the classes here override or call
#: (a property: its setter).
HOOKS: Final = (
    (HttpToolsProtocol, "connection_made"),
    (HttpToolsProtocol, "connection_lost"),
    (HttpToolsProtocol, "data_received"),
    (HttpToolsProtocol, "on_message_begin"),
    (HttpToolsProtocol, "on_headers_complete"),
    (HttpToolsProtocol, "send_400_response"),
    (WebSocketsSansIOProtocol, "connection_made"),
    (WebSocketsSansIOProtocol, "connection_lost"),
    (WebSocketsSansIOProtocol, "data_received"),
    (WebSocketsSansIOProtocol, "handle_events"),
    (WebSocketsSansIOProtocol, "handle_connect"),
    (WebSocketsSansIOProtocol, "handle_ping"),
    (WebSocketsSansIOProtocol, "handle_parser_exception"),
    (WebSocketsSansIOProtocol, "send_receive_event_to_app"),
    (WebSocketsSansIOProtocol, "pause_writing"),
    (WebSocketsSansIOProtocol, "resume_writing"),
    (WebSocketsSansIOProtocol, "send"),
    (ServerProtocol, "recv_frame"),
    (ServerProtocol, "data_to_send"),
    (ServerProtocol, "fail"),
    (ServerProtocol, "state"),
    *((uvicorn.Server, name) for name in SERVER_METHODS),
)


# For the classes used as they are (``uvicorn --ws wirehub.web.uvicorn_protocols:RawSendProtocol``):
# websockets' parser takes what the default limits let through.
raise_parser_limits(WireLimits(), websockets.http11)


def ws_protocol_class(
    name: str, limits: WireLimits, counters: WireCounters | None = None
) -> type[asyncio.Protocol]:
    """The uvicorn ``ws`` option for ``server.ws = name``, configured with these bounds.

    ``"wirehub"`` and ``"auto"``: :class:`RawSendProtocol`; ``"websockets-sansio"``:
    :class:`WirehubWebSocketProtocol`; ``"websockets"``: uvicorn's legacy class
    with a line limit to match; ``"wsproto"``: uvicorn's with bounded pongs.
    """
    raise_parser_limits(limits, websockets.http11)
    counters = counters if counters is not None else LocalCounters()
    base: type[asyncio.Protocol]
    if name in ("wirehub", "auto"):
        base = RawSendProtocol
    elif name == "websockets-sansio":
        base = WirehubWebSocketProtocol
    elif name == "websockets":
        return legacy_class(limits)
    elif name == "wsproto":
        return wsproto_class(limits, counters)
    else:
        raise ValueError(f"unknown server.ws {name!r}")
    return type(base.__name__, (base,), {"limits": limits, "counters": counters})


def http_protocol_class(
    limits: WireLimits, counters: WireCounters | None = None
) -> type[asyncio.Protocol]:
    """The uvicorn ``http`` option: :class:`WirehubHttpProtocol` with these bounds."""
    counters = counters if counters is not None else LocalCounters()
    attrs = {"limits": limits, "counters": counters}
    return type(WirehubHttpProtocol.__name__, (WirehubHttpProtocol,), attrs)


def uvicorn_version() -> tuple[int, int]:
    """The installed uvicorn's (major, minor), to compare with :data:`SUPPORTED_UVICORN`."""
    major, minor = uvicorn.__version__.split(".")[:2]
    return int(major), int(minor)

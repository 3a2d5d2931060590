"""The bounds of the wire layer, and where its refusals are counted.

The wire layer is what runs before the ASGI app sees a connection, and under
it afterwards: the HTTP request head (the WebSocket upgrade is one), and the
WebSocket frames the app never sees (ping, pong, close). Its protocol classes
are built by uvicorn, one per connection, so their bounds and counters are
handed in once, when the classes are configured (``wirehub.server``), as a
:class:`WireLimits` and a :class:`WireCounters`.

``WireCounters`` is satisfied by the hub's :class:`~wirehub.core.node.Node`:
a peer closed by the wire layer for not reading is counted with the other slow
consumers, and each refusal adds to the same ``errors`` counter that
``wirehub_errors_total`` reports, under these codes:

=====================  ==========================================================
code                   counted when
=====================  ==========================================================
``uri_too_long``       a request line over ``max_request_line`` (HTTP 414)
``headers_too_large``  header bytes or header count over the limit (HTTP 431)
``bad_http_request``   a request the HTTP parser refuses (HTTP 400)
``handshake_timeout``  a request head not complete in time (HTTP 408, or a plain
                       close when nothing at all arrived)
``protocol_error``     a WebSocket protocol violation (close 1002, 1007, 1011)
``too_large``          a WebSocket message over ``server.ws_max_size`` (close 1009)
``rate_limited``       a ping or pong over ``rate``/``burst`` (not answered)
=====================  ==========================================================
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LocalCounters", "WireCounters", "WireLimits"]


@dataclass(frozen=True, kw_only=True)
class WireLimits:
    """Every bound of the wire layer; ``Settings`` maps ``[server]`` and ``[limits]`` onto it."""

    #: Longest request line (method, target, version), in bytes: 414 beyond.
    max_request_line: int = 64 * 1024
    #: All header lines of one request together, in bytes: 431 beyond.
    max_header_bytes: int = 64 * 1024
    #: Header lines in one request: 431 beyond.
    max_headers: int = 100
    #: Seconds a whole request head may take from its first byte (or the accept).
    handshake_timeout: float = 10.0
    #: Seconds without a byte while a request head is incomplete.
    handshake_idle_timeout: float = 5.0
    #: Bytes the hub may hold for a peer beyond the socket's own buffer; a
    #: control frame (pong, close) that does not fit makes it a slow consumer.
    queue_max_bytes: int = 2 * 1024 * 1024
    #: Seconds a peer may leave the socket full while a control frame waits.
    queue_max_lag: float = 5.0
    #: Control frames per second (token bucket; 0: no limit) and the bucket size.
    rate: float = 1000.0
    burst: int = 2000
    #: Control frames over the rate within ``abuse_window`` seconds that close
    #: the connection with 4029 (0: never close).
    abuse_limit: int = 100
    abuse_window: float = 10.0
    #: Seconds a close may take before the socket is dropped.
    close_timeout: float = 2.0

    @property
    def max_head(self) -> int:
        """The largest request head these limits let through, in bytes."""
        return self.max_request_line + self.max_header_bytes


class WireCounters(Protocol):
    """Where the wire layer counts: the hub's node, or :class:`LocalCounters`."""

    slow_consumers: int
    errors: Counter[str]


@dataclass
class LocalCounters:
    """Counters for protocol classes configured without a hub (library use, tests)."""

    slow_consumers: int = 0
    errors: Counter[str] = field(default_factory=Counter)

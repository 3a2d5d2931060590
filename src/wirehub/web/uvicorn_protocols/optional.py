"""The other uvicorn WebSocket classes, imported only when chosen.

``websockets`` (legacy)
    uvicorn's class with a line limit that lets the same heads through. Its
    pong waits for the socket to drain, which stops reading: a ping flood from
    a peer that does not read is held by the kernel's buffers, not the hub's.
    (uvicorn warns at import that it is deprecated.)

``wsproto`` (an optional package)
    uvicorn's class, with pings taken at the rate (4029 on abuse) and pongs
    within the outbound bound (4001), like the sans-I/O classes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wirehub.core.protocol import CloseCode
from wirehub.core.ratelimit import FrameLimiter
from wirehub.web.uvicorn_protocols._common import logger, peer
from wirehub.web.wirelimits import WireCounters, WireLimits

__all__ = ["legacy_class", "raise_parser_limits", "wsproto_class"]


def raise_parser_limits(limits: WireLimits, *modules: Any) -> None:
    """Let websockets' own handshake parser take every head the HTTP layer lets through.

    uvicorn re-serializes the upgrade request for it (a header becomes
    ``name: value``), hence the slack.
    """
    line = max(limits.max_request_line, limits.max_header_bytes) + 64
    for module in modules:
        module.MAX_LINE_LENGTH = max(module.MAX_LINE_LENGTH, line)
        module.MAX_NUM_HEADERS = max(module.MAX_NUM_HEADERS, limits.max_headers + 1)


def legacy_class(limits: WireLimits) -> type[asyncio.Protocol]:
    # Imported only when chosen: uvicorn warns that it is deprecated.
    import websockets.legacy.http
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol

    raise_parser_limits(limits, websockets.legacy.http)
    line = max(limits.max_request_line, limits.max_header_bytes) + 64

    class LegacyWebSocketProtocol(WebSocketProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Its head is read line by line from a StreamReader whose limit is
            # 32 KiB: give it room for the longest line we let through.
            if line > self.read_limit // 2:
                self.reader = asyncio.StreamReader(limit=line, loop=self.loop)

    return LegacyWebSocketProtocol


def wsproto_class(limits: WireLimits, counters: WireCounters) -> type[asyncio.Protocol]:
    # Imported only when chosen: wsproto is an optional package.
    import wsproto.events
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

    class WsprotoProtocol(WSProtocol):
        """uvicorn's wsproto class, answering pings within the rate and the outbound bound."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = limits.close_timeout
            self._limiter = (
                FrameLimiter(
                    limits.rate,
                    limits.burst,
                    abuse_limit=limits.abuse_limit,
                    abuse_window=limits.abuse_window,
                )
                if limits.rate > 0
                else None
            )

        def handle_ping(self, event: Any) -> None:
            if self.close_sent or self.transport.is_closing():
                return
            limiter = self._limiter
            if limiter is not None and not limiter.allow():
                counters.errors["rate_limited"] += 1
                if limiter.abusive:
                    self._fail(CloseCode.RATE_LIMITED, "too many frames over the rate limit")
                return
            data = self.conn.send(event.response())
            buffered = self.transport.get_write_buffer_size()
            high = self.transport.get_write_buffer_limits()[1]
            if buffered + len(data) > limits.queue_max_bytes + high:
                logger.warning(
                    "%s slow consumer: %d bytes unsent, closing (4001)",
                    peer(self.client),
                    buffered,
                )
                counters.slow_consumers += 1
                self._fail(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")
                return
            self.transport.write(data)

        def _fail(self, code: int, reason: str) -> None:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.close_sent = True
            close = wsproto.events.CloseConnection(code=code, reason=reason)
            self.transport.write(self.conn.send(close))
            # A peer that does not read never lets a closing transport go.
            self.loop.call_later(self.close_timeout, self.transport.abort)
            self.transport.close()

    return WsprotoProtocol

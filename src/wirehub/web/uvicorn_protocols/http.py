"""The HTTP protocol: httptools with a bounded, timed request head (every ``server.ws``).

Each read is measured by a :class:`~wirehub.web.headscan.HeadScanner` before
httptools buffers it: a request line, header bytes or header count over its
limit is answered at once with 414 or 431 (``Connection: close``), the
connection lingers so the answer is read rather than reset, then closes. A
request head must keep arriving (an idle timeout between reads) and be
complete within a total time: else 408 and close, or a plain close when
nothing arrived at all. The timer runs from the accept, and again from the
first byte of each later request on a keep-alive connection; a request that
arrives whole in one read costs no timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from wirehub.web.headscan import HeadScanner, Refusal
from wirehub.web.uvicorn_protocols._common import logger, peer
from wirehub.web.wirelimits import LocalCounters, WireCounters, WireLimits

__all__ = ["WirehubHttpProtocol"]

#: After refusing a request head, the answer and our end of the stream are
#: sent, and the peer's input is read and dropped (up to the bytes, then no
#: longer read) until it ends its side or the seconds pass: closing with unread
#: input sends a reset, which can destroy the answer before the peer reads it.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024


class WirehubHttpProtocol(HttpToolsProtocol):
    """httptools with a bounded, timed request head (see the module docstring)."""

    limits: ClassVar[WireLimits] = WireLimits()
    counters: ClassVar[WireCounters] = LocalCounters()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: HeadScanner | None = self._new_head()
        self._head_started = 0.0
        self._last_read = 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        self._silent = True  # nothing received on this connection yet
        self._lingering = False
        self._linger_left = 0
        self._linger_timer: asyncio.TimerHandle | None = None

    def _new_head(self) -> HeadScanner:
        limits = self.limits
        return HeadScanner(
            max_request_line=limits.max_request_line,
            max_header_bytes=limits.max_header_bytes,
            max_headers=limits.max_headers,
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self._last_read = self.loop.time()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                # Enough dropped: stop reading (no more work) and let the
                # linger timer close, giving the peer time to read the answer.
                self.transport.pause_reading()
            return
        self._silent = False
        head = self._head
        if head is not None:
            self._last_read = self.loop.time()
            refusal = head.feed(data)
            if refusal is not None:
                self._refuse(refusal)
                return
        super().data_received(data)
        # Armed only when a head is still incomplete after a read: a request
        # that arrives whole costs no timer.
        if self._head is not None and self._head_timer is None and not self._lingering:
            self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head is None:  # the next request on a keep-alive connection
            self._head = self._new_head()
            self._head_started = self._last_read = self.loop.time()

    def on_headers_complete(self) -> None:
        self._head = None
        self._cancel_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # httptools refused the request: same answer path as our own refusals.
        self._refuse(Refusal(400, msg, "bad_http_request"))

    # -- the head's timer

    def _arm_head_timer(self) -> None:
        limits = self.limits
        deadline = min(
            self._last_read + limits.handshake_idle_timeout,
            self._head_started + limits.handshake_timeout,
        )
        self._head_timer = self.loop.call_at(deadline, self._on_head_timer)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timer(self) -> None:
        self._head_timer = None
        head = self._head
        if head is None or self._lingering or self.transport.is_closing():
            return
        limits = self.limits
        now = self.loop.time()
        if (
            now - self._last_read < limits.handshake_idle_timeout
            and now - self._head_started < limits.handshake_timeout
        ):
            self._arm_head_timer()  # bytes came since: wait for the new deadline
            return
        if self._silent:
            # Nothing at all: no request to answer.
            self.counters.errors["handshake_timeout"] += 1
            logger.debug(
                "%s closed: no request within %.1fs", peer(self.client), now - self._head_started
            )
            self.transport.close()
            return
        self._refuse(Refusal(408, "request head not received in time", "handshake_timeout"))

    # -- refusing

    def _refuse(self, refusal: Refusal) -> None:
        """Answer with ``refusal`` (``Connection: close``), then linger and close."""
        status, reason, code = refusal
        self.counters.errors[code] += 1
        level = logging.DEBUG if status == 408 else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "%s refused: %d, %s", peer(self.client), status, reason)
        self._head = None
        self._cancel_head_timer()
        body = (reason + "\n").encode("latin-1")
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        transport = self.transport
        transport.write(b"".join(content))
        # Not a close yet: see _LINGER_SECONDS.
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        self._linger_left = _LINGER_BYTES
        self._linger_timer = self.loop.call_later(_LINGER_SECONDS, transport.close)

"""Bound an HTTP request head as its bytes arrive, before any parser buffers them (sans I/O).

HTTP parsers keep a request line or a header until it ends, so a peer that
never ends one grows the server's memory with every byte it sends. The HTTP
protocol feeds each read to a :class:`HeadScanner` *before* its parser sees
it; the scanner counts the request line, the header bytes and the header
lines, and names the refusal as soon as one limit is passed — without waiting
for the head to end and without keeping any of it. A read that ends the head
and carries more (a body, the first WebSocket frames) is measured only up to
the blank line.

It only measures: the parser still decides what is valid HTTP.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["HeadScanner", "Refusal"]

_END = b"\n\r\n"  # a line end followed by the blank line


class Refusal(NamedTuple):
    """Why a request head is refused: HTTP status, a reason for the body, a counter code."""

    status: int
    reason: str
    code: str


class HeadScanner:
    """Counts one request head; :meth:`feed` returns a :class:`Refusal` once a limit is passed."""

    __slots__ = (
        "_header_bytes",
        "_headers",
        "_in_headers",
        "_line",
        "_prev",
        "done",
        "max_header_bytes",
        "max_headers",
        "max_request_line",
        "received",
    )

    def __init__(
        self,
        *,
        max_request_line: int = 64 * 1024,
        max_header_bytes: int = 64 * 1024,
        max_headers: int = 100,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        #: Bytes fed so far (0: the peer has sent nothing yet).
        self.received = 0
        #: The blank line that ends the head has been seen.
        self.done = False
        self._line = 0  # request line bytes so far (while in it)
        self._in_headers = False
        self._header_bytes = 0  # bytes after the request line, line ends included
        self._headers = 0  # header lines ended so far
        # The last two bytes of the header section, as if it began with "\n"
        # (the request line's end), to find the blank line across reads.
        self._prev = b"\n"

    def feed(self, data: bytes) -> Refusal | None:
        """Count one read; a refusal means the peer must be answered and closed."""
        if self.done or not data:
            return None
        self.received += len(data)
        start = 0
        if not self._in_headers:
            nl = data.find(b"\n")
            if nl < 0:
                self._line += len(data)
                if self._line - data.endswith(b"\r") > self.max_request_line:
                    return self._uri_too_long()
                return None
            length = self._line + nl
            if nl > 0 and data[nl - 1] == 0x0D:
                length -= 1
            if length > self.max_request_line:
                return self._uri_too_long()
            self._in_headers = True
            start = nl + 1
        return self._feed_headers(data, start)

    def _feed_headers(self, data: bytes, start: int) -> Refusal | None:
        prev = self._prev
        end = -1
        probe = (prev + data[start : start + 2]).find(_END)
        if probe >= 0:  # the blank line straddles this read and the last one
            end = start + probe + len(_END) - len(prev)
        else:
            found = data.find(_END, start)
            if found >= 0:
                end = found + len(_END)
        stop = len(data) if end < 0 else end
        self._header_bytes += stop - start
        self._headers += data.count(b"\n", start, stop) - (end >= 0)
        if stop - start >= 2:
            self._prev = data[stop - 2 : stop]
        else:
            self._prev = (prev + data[start:stop])[-2:]
        if self._header_bytes > self.max_header_bytes:
            return Refusal(
                431,
                f"request headers longer than {self.max_header_bytes} bytes",
                "headers_too_large",
            )
        if self._headers > self.max_headers:
            return Refusal(
                431, f"more than {self.max_headers} request headers", "headers_too_large"
            )
        if end >= 0:
            self.done = True
        return None

    def _uri_too_long(self) -> Refusal:
        return Refusal(
            414, f"request line longer than {self.max_request_line} bytes", "uri_too_long"
        )

"""A service's output: bounded line splitting, one reader per pipe, a ring of the last lines.

Each pipe (stdout, stderr) gets its own :class:`PipeReader`, an asyncio
protocol fed by the event loop as soon as bytes arrive, so a chatty process
never blocks on a full pipe while we wait for something else. Bytes go through
a sans-I/O :class:`LineSplitter`: a line longer than ``max_line`` bytes is cut
into pieces of at most ``max_line`` bytes (never fatal, counted in ``splits``),
and bytes that are not UTF-8 become U+FFFD.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LineSplitter", "LogLine", "LogRing", "PipeReader"]


@dataclass(frozen=True, slots=True)
class LogLine:
    ts: float
    stream: str
    line: str

    def to_dict(self) -> dict[str, object]:
        return {"ts": self.ts, "stream": self.stream, "line": self.line}


def _utf8_cut(buf: bytes | bytearray, start: int, limit: int) -> int:
    """An end index <= ``start + limit`` that does not split a UTF-8 sequence if possible."""
    cut = start + limit
    # Back off over continuation bytes (0b10xxxxxx), at most 3 of them.
    while cut > start + limit - 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


class LineSplitter:
    """Bytes in, decoded lines out; never holds more than ``max_line`` bytes of a line."""

    def __init__(self, max_line: int = 64 * 1024) -> None:
        if max_line < 16:
            raise ValueError("max_line must be at least 16 bytes")
        self.max_line = max_line
        self._buf = bytearray()
        #: How many times an over-long line was cut.
        self.splits = 0

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        lines: list[str] = []
        buf = self._buf
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end == -1:
                break
            # A complete line, possibly longer than max_line: emit it in pieces.
            while end - start > self.max_line:
                cut = _utf8_cut(buf, start, self.max_line)
                lines.append(self._decode(buf[start:cut]))
                self.splits += 1
                start = cut
            lines.append(self._decode(buf[start:end]))
            start = end + 1
        # An incomplete line: never keep more than max_line bytes of it.
        while len(buf) - start > self.max_line:
            cut = _utf8_cut(buf, start, self.max_line)
            lines.append(self._decode(buf[start:cut]))
            self.splits += 1
            start = cut
        del buf[:start]
        return lines

    def flush(self) -> list[str]:
        """The last line when the stream ends without a newline."""
        if not self._buf:
            return []
        line = self._decode(self._buf)
        self._buf.clear()
        return [line]

    @staticmethod
    def _decode(raw: bytes | bytearray) -> str:
        text = bytes(raw).decode("utf-8", errors="replace")
        return text[:-1] if text.endswith("\r") else text


class LogRing:
    """The last ``size`` lines of a service, for the API and failure messages."""

    def __init__(self, size: int = 1000) -> None:
        self._lines: deque[LogLine] = deque(maxlen=max(1, size))
        #: Every line ever appended (the ring keeps the last ``size``).
        self.total = 0

    def append(self, stream: str, line: str) -> LogLine:
        entry = LogLine(time.time(), stream, line)
        self._lines.append(entry)
        self.total += 1
        return entry

    def tail(self, n: int | None = None) -> list[LogLine]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []

    def __len__(self) -> int:
        return len(self._lines)


class PipeReader(asyncio.Protocol):
    """Reads one pipe; calls ``on_line(stream, line)`` for each line; ``done`` at EOF."""

    def __init__(self, stream: str, on_line: Callable[[str, str], None], *, max_line: int) -> None:
        self.stream = stream
        self.on_line = on_line
        self.splitter = LineSplitter(max_line)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for line in self.splitter.feed(data):
            self.on_line(self.stream, line)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        for line in self.splitter.flush():
            self.on_line(self.stream, line)
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        """Stop reading now (a process outside the group still holds the pipe)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

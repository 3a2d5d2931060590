"""Sans-I/O TCP framers: bytes in, frames (or framing errors) out, and back.

A TCP byte stream has no message boundaries; a framer restores them. Each
framer is fed whatever one ``read()`` returned and hands back the complete
frames found so far, keeping at most ``max_frame`` bytes of an unfinished one.
Nothing here touches a socket, so every edge case (split reads, many frames in
one read, oversize frames) is tested without one.

Policies on a frame over ``max_frame`` (docs/bridges.md, "Bad input"):

- ``line`` / ``jsonl``: the line is **rejected** — its bytes are skipped up to
  the next newline, one :class:`FrameError` (``too_large``) is returned in its
  place, and the stream goes on with the next line.
- ``length``: a length prefix over ``max_frame`` is **fatal** — the stream
  cannot be trusted to be in sync any more, so :class:`FrameError` has
  ``fatal=True`` and the bridge disconnects the peer.
- ``raw``: each read is one frame; reads are never larger than ``max_frame``
  (the bridge reads at most that much), so nothing is ever too large.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "FRAMINGS",
    "FrameError",
    "Framer",
    "FramingName",
    "LengthFramer",
    "LineFramer",
    "RawFramer",
    "make_framer",
]

FramingName = Literal["line", "length", "raw", "jsonl"]
FRAMINGS: tuple[FramingName, ...] = ("line", "length", "raw", "jsonl")

_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class FrameError:
    """A framing problem reported in place of a frame (not raised)."""

    code: str
    message: str
    #: The stream is out of sync: the peer must be disconnected.
    fatal: bool = False


class Framer(Protocol):
    """Bytes of one TCP stream in, frames out; frames back to bytes."""

    max_frame: int

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        """Frames completed by ``data`` (and errors in their place), in order."""
        ...

    def eof(self) -> list[bytes | FrameError]:
        """The peer closed its side: whatever is left, as frames or an error."""
        ...

    def encode(self, payload: bytes) -> bytes:
        """One payload as bytes for the wire."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame (never more than ``max_frame`` + a header)."""
        ...


class LineFramer:
    """Newline-delimited frames; ``\\r\\n`` tolerated; oversize lines rejected and skipped."""

    __slots__ = ("_buf", "_skipping", "max_frame")

    def __init__(self, max_frame: int = 64 * 1024) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        #: Inside an oversize line: drop bytes up to the next newline.
        self._skipping = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        out: list[bytes | FrameError] = []
        start = 0
        end = len(data)
        limit = self.max_frame
        buf = self._buf
        while start < end:
            nl = data.find(b"\n", start)
            if self._skipping:
                if nl < 0:
                    return out
                self._skipping = False
                start = nl + 1
                continue
            if nl < 0:
                # +1: a line of exactly max_frame may still have its "\r" here.
                if len(buf) + end - start > limit + 1:
                    out.append(self._too_large(len(buf) + end - start))
                    buf.clear()
                    self._skipping = True
                else:
                    buf += data[start:]
                return out
            if buf:
                buf += data[start:nl]
                line = bytes(buf)
                buf.clear()
            else:
                line = data[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                out.append(self._too_large(len(line)))
            else:
                out.append(line)
        return out

    def eof(self) -> list[bytes | FrameError]:
        """A last line without its newline is still a line."""
        if self._skipping or not self._buf:
            self._buf.clear()
            return []
        line = bytes(self._buf)
        self._buf.clear()
        if line.endswith(b"\r"):
            line = line[:-1]
        return [self._too_large(len(line))] if len(line) > self.max_frame else [line]

    def encode(self, payload: bytes) -> bytes:
        return payload + b"\n"

    def _too_large(self, size: int) -> FrameError:
        more = "+" if size > self.max_frame else ""
        return FrameError(
            "too_large",
            f"line of {size}{more} bytes exceeds max_frame {self.max_frame}; line skipped",
        )


class LengthFramer:
    """4-byte big-endian length prefix, then that many bytes; a prefix over max_frame is fatal."""

    __slots__ = ("_broken", "_buf", "max_frame")

    def __init__(self, max_frame: int = 64 * 1024) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._broken = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        if self._broken:
            return []
        buf = self._buf
        buf += data
        out: list[bytes | FrameError] = []
        pos = 0
        size = len(buf)
        while size - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > self.max_frame:
                self._broken = True
                buf.clear()
                out.append(
                    FrameError(
                        "too_large",
                        f"length prefix {length} exceeds max_frame {self.max_frame}",
                        fatal=True,
                    )
                )
                return out
            if size - pos - 4 < length:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return out

    def eof(self) -> list[bytes | FrameError]:
        left = len(self._buf)
        self._buf.clear()
        if left and not self._broken:
            return [FrameError("bad_request", f"stream ended inside a frame ({left} bytes left)")]
        return []

    def encode(self, payload: bytes) -> bytes:
        return _LENGTH.pack(len(payload)) + payload


class RawFramer:
    """Each read is one frame (the reader never reads more than ``max_frame``)."""

    __slots__ = ("max_frame",)

    def __init__(self, max_frame: int = 64 * 1024) -> None:
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        return 0

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        if not data:
            return []
        limit = self.max_frame
        if len(data) <= limit:
            return [data]
        # Only reachable if a caller feeds more than one read's worth.
        return [data[i : i + limit] for i in range(0, len(data), limit)]

    def eof(self) -> list[bytes | FrameError]:
        return []

    def encode(self, payload: bytes) -> bytes:
        return payload


def make_framer(name: FramingName, max_frame: int = 64 * 1024) -> Framer:
    """A fresh framer for one stream; ``jsonl`` frames like ``line``."""
    if name in ("line", "jsonl"):
        return LineFramer(max_frame)
    if name == "length":
        return LengthFramer(max_frame)
    if name == "raw":
        return RawFramer(max_frame)
    raise ValueError(f"unknown framing {name!r}; expected one of {', '.join(FRAMINGS)}")

"""Frame once, write the same bytes to every socket: the fast writer behind ASGI.

On the ASGI path every delivery is a ``websocket.send`` message that the
server encodes to UTF-8 and frames on its own, once per recipient. A publish
to N members therefore frames the same text N times. ``websockets.broadcast``
avoids that by framing once and writing the same bytes to every transport.

:class:`RawSendProtocol` is uvicorn's sans-I/O WebSocket protocol with one
addition: it offers, in the ASGI scope's extensions, a function that writes an
already-framed message straight to its socket — only while the connection is
open, its transport is not paused (backpressure) and no extension (such as
permessage-deflate) is in use; otherwise it declines and the caller falls back
to the ordinary ``websocket.send``. ``wirehub serve`` uses it by default
(``server.ws = "wirehub"``); with any other uvicorn implementation, or another
ASGI server, the extension is simply absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["EXTENSION", "RawSendProtocol", "text_frame"]

#: Scope extension key; its value is ``write(frame_bytes) -> bool``.
EXTENSION = "wirehub.raw_send"

RawWrite = Callable[[bytes], bool]

# (text, frame) of the last call: one tuple, so a reader in another thread
# (another hub's loop) never sees one half of an update.
_last: tuple[str | None, bytes] = (None, b"")


def text_frame(text: str) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2) for ``text``.

    A fan-out hands the same string to every member in a row, so the frame is
    built once per publish and reused (the last one is kept).
    """
    global _last
    cached = _last
    if cached[0] is text:
        return cached[1]
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    frame = header + payload
    _last = (text, frame)
    return frame


class RawSendProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, offering wirehub a direct frame writer."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            # The app task was created but has not run yet: it sees this.
            scope["extensions"][EXTENSION] = self.write_frame

    def write_frame(self, frame: bytes) -> bool:
        """Write a whole framed message now, or return False to take the ASGI path."""
        if (
            not self.handshake_complete
            or self.close_sent
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True

"""Frame once, write the same bytes to every socket: the fast writer behind ASGI.

On the ASGI path every delivery is a ``websocket.send`` message that the
server encodes to UTF-8 and frames on its own, once per recipient. A publish
to N members therefore frames the same text N times. ``websockets.broadcast``
avoids that by framing once and writing the same bytes to every transport.

``wirehub serve``'s default WebSocket protocol (``server.ws = "wirehub"``,
:class:`~wirehub.web.uvicorn_protocols.RawSendProtocol`) offers, in the ASGI
scope's extensions under :data:`EXTENSION`, a function that writes an
already-framed message straight to its socket — only while the connection is
open, its transport is not paused (backpressure) and no extension (such as
permessage-deflate) is in use; otherwise it declines and the caller falls back
to the ordinary ``websocket.send``. This module holds what both sides share:
the key and :func:`text_frame`; the frame of a publish is built once on its
:class:`~wirehub.core.outbound.Outbound` envelope. With any other uvicorn implementation, or
another ASGI server, the extension is simply absent.
"""

from __future__ import annotations

from collections.abc import Callable

from wirehub.core.outbound import ws_frame

__all__ = ["EXTENSION", "EXTENSION_MANY", "RawWrite", "RawWriteMany", "text_frame"]

#: Scope extension key; its value is ``write(frame_bytes) -> bool``.
EXTENSION = "wirehub.raw_send"
#: Scope extension key; its value is ``writelines([frame_bytes, ...]) -> bool``: the
#: frames a loop pass produced for this socket, in order, in one (vectored) write.
EXTENSION_MANY = "wirehub.raw_send_many"

RawWrite = Callable[[bytes], bool]
RawWriteMany = Callable[[list[bytes]], bool]


def text_frame(text: str) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2) for ``text``.

    A fan-out does not call this per member: its one
    :class:`~wirehub.core.outbound.Outbound` envelope builds the frame once
    (``Outbound.ws_frame``) and every member's transport writes those bytes.
    """
    return ws_frame(text.encode())

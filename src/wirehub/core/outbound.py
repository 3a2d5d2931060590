"""One outbound envelope per publish: the encoded frame and every form a transport writes.

A fan-out hands the same frame to N members. Each transport needs it in its
own form — the WebSocket frame bytes (the raw-send fast writer), the ASGI
``websocket.send`` message, a TCP bridge's framed bytes — and each form is the
same for every member. :class:`Outbound` is built once per publish (by
:meth:`wirehub.core.node.Node.deliver` and the room fan-out) and carries the
encoded text plus those forms, each computed the first time a transport asks
and cached on the envelope: a publish to N members frames once, builds one ASGI
message and parses the JSON once for all bridges, with no module-level caches.

Pure: no I/O, no imports outside the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Outbound", "ws_frame"]

T = TypeVar("T")

_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode
_UNSET: Any = object()  # Outbound._parsed before the first parse


def ws_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """An unmasked, final WebSocket frame (RFC 6455 §5.2) around ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((opcode, size))
    elif size < 65536:
        header = bytes((opcode, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((opcode, 127)) + size.to_bytes(8, "big")
    return header + payload


class Outbound:
    """An encoded frame on its way out, with its per-transport forms built lazily once.

    ``text`` is what the hub encoded (a JSON ``str``; ``bytes`` for a binary
    frame). ``len(out)`` is ``len(text)``, the size the outbound queues count.
    """

    __slots__ = ("_asgi", "_forms", "_frame", "_parsed", "size", "text")

    def __init__(self, text: str | bytes) -> None:
        self.text = text
        self.size = len(text)
        self._frame: bytes | None = None
        self._asgi: dict[str, Any] | None = None
        self._parsed: Any = _UNSET
        self._forms: dict[object, Any] | None = None

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<Outbound {self.size} {'chars' if isinstance(self.text, str) else 'bytes'}>"

    @property
    def ws_frame(self) -> bytes:
        """The whole WebSocket frame (header + payload), built on first use."""
        frame = self._frame
        if frame is None:
            text = self.text
            frame = ws_frame(text.encode()) if isinstance(text, str) else ws_frame(text, _BINARY)
            self._frame = frame
        return frame

    @property
    def asgi(self) -> dict[str, Any]:
        """The ASGI ``websocket.send`` message (servers only read it, so one serves all)."""
        message = self._asgi
        if message is None:
            text = self.text
            key = "text" if isinstance(text, str) else "bytes"
            message = self._asgi = {"type": "websocket.send", key: text}
        return message

    def parsed(self, loads: Callable[[str | bytes], Any]) -> Any:
        """``loads(text)``, once per envelope (the TCP bridges read ``type`` and ``data``)."""
        value = self._parsed
        if value is _UNSET:
            value = self._parsed = loads(self.text)
        return value

    def form(self, owner: object, build: Callable[[Outbound], T]) -> T:
        """``build(self)``, once per envelope and ``owner`` (e.g. one TCP bridge's framing)."""
        forms = self._forms
        if forms is None:
            forms = self._forms = {}
        elif owner in forms:
            return forms[owner]  # type: ignore[no-any-return]
        value = forms[owner] = build(self)
        return value

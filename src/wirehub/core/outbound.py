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

__all__ = ["Outbound", "batch_frames", "frames_for", "ws_frame"]

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

    __slots__ = (
        "_asgi",
        "_batch",
        "_forms",
        "_frame",
        "_lines",
        "_parsed",
        "_payload",
        "size",
        "text",
    )

    def __init__(self, text: str | bytes) -> None:
        self.text = text
        self.size = len(text)
        self._payload: bytes | None = None
        self._frame: bytes | None = None
        # The last batched frame that starts with this message: (the messages after it, frame).
        self._batch: tuple[list[Outbound], bytes] | None = None
        # The last write that starts with this message: (batching, its messages, frames).
        self._lines: tuple[tuple[int, int] | None, list[Outbound], int, list[bytes]] | None = None
        self._asgi: dict[str, Any] | None = None
        self._parsed: Any = _UNSET
        self._forms: dict[object, Any] | None = None

    def __len__(self) -> int:
        return self.size

    def forget_frames(self) -> None:
        """Drop the cache of the last write that started with this message (its pass is over).

        It holds the write's list of messages, which holds this one: left alone,
        the cycle keeps the pass's payloads until the garbage collector finds it.
        """
        self._lines = None

    def __repr__(self) -> str:
        return f"<Outbound {self.size} {'chars' if isinstance(self.text, str) else 'bytes'}>"

    @property
    def payload(self) -> bytes:
        """The frame's payload: the UTF-8 of a text frame, a binary frame's bytes."""
        payload = self._payload
        if payload is None:
            text = self.text
            payload = self._payload = text.encode() if isinstance(text, str) else text
        return payload

    @property
    def ws_frame(self) -> bytes:
        """The whole WebSocket frame (header + payload), built on first use."""
        frame = self._frame
        if frame is None:
            opcode = _TEXT if isinstance(self.text, str) else _BINARY
            frame = self._frame = ws_frame(self.payload, opcode)
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


def frames_for(outs: list[Outbound], batch: tuple[int, int] | None) -> list[bytes]:
    """The frames of one coalesced write of ``outs``: one per message, or batched.

    Every member of a room is sent the same messages in a pass, so the same
    list — most often the room pass's own list, found again by identity and
    length (it only grows), else by an identity compare of the messages (a C
    loop, no Python per message). Built for the first member, kept on the
    first message.
    """
    first = outs[0]
    cached = first._lines
    if (
        cached is not None
        and cached[0] == batch
        and cached[2] == len(outs)
        and (cached[1] is outs or cached[1] == outs)
    ):
        return cached[3]
    frames = [out.ws_frame for out in outs] if batch is None else batch_frames(outs, *batch)
    first._lines = (batch, outs, len(outs), frames)
    return frames


def batch_frames(outs: list[Outbound], max_messages: int, max_bytes: int) -> list[bytes]:
    """WebSocket frames for ``outs`` where text messages share frames, joined by LF.

    The batched framing of docs/protocol.md: up to ``max_messages`` messages
    and about ``max_bytes`` of payload per text frame, in order; a binary
    frame stays alone. A group of one is the envelope's own cached frame, the
    same bytes every other member gets.
    """
    frames: list[bytes] = []
    group: list[Outbound] = []
    size = 0
    for out in outs:
        if not isinstance(out.text, str):
            if group:
                frames.append(_joined(group))
                group, size = [], 0
            frames.append(out.ws_frame)
            continue
        payload = out.payload
        if group and (len(group) >= max_messages or size + len(payload) > max_bytes):
            frames.append(_joined(group))
            group, size = [], 0
        group.append(out)
        size += len(payload) + 1
    if group:
        frames.append(_joined(group))
    return frames


def _joined(group: list[Outbound]) -> bytes:
    first = group[0]
    if len(group) == 1:
        return first.ws_frame
    # The members of a room get the same messages in a pass, so the same batch:
    # built once, kept on its first message, found again by an identity compare
    # of the rest (not of the group: holding it, the first would hold itself, a
    # cycle only the garbage collector frees).
    cached = first._batch
    rest = group[1:]
    if cached is not None and cached[0] == rest:
        return cached[1]
    frame = ws_frame(b"\n".join([out.payload for out in group]))
    first._batch = (rest, frame)
    return frame

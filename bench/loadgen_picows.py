"""The load generator's C-accelerated client: picows on uvloop (``loadgen.py --client picows``).

bench/loadgen.py's own client parses frames in Python, one slice and a few
integer operations per frame; picows parses in C and calls Python once per
frame with the payload as a memoryview. On a 2-core machine where the load
generator has one core and the server the other, whatever the client spends per
received frame is a ceiling on the deliveries/s any server can show, so the
cheaper client is the default (bench/fanout.py prints the loadgen's CPU per
delivery with either, to check).

Same surface as ``loadgen.Client``: ``connect()``, ``send_json``, ``abort``,
the ``opened`` / ``joined`` / ``lost`` futures, ``pause_reading`` /
``resume_reading``, and every text frame handed to ``owner.on_text(client,
payload, now)`` (each newline-delimited JSON message of it, with ``batch``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

__all__ = ["PicowsClient"]

TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE
#: uvloop's transports (what the servers use too) unless LOADGEN_AIOFASTNET=1.
AIOFASTNET = os.environ.get("LOADGEN_AIOFASTNET") == "1"


class PicowsClient(WSListener):
    """One WebSocket client on picows: handshake and framing in C, callbacks into its owner."""

    def __init__(self, owner: Any, client_id: str, host: str, port: int, batch: bool) -> None:
        self.owner = owner
        self.on_text = owner.on_text
        self.id = client_id
        self.url = f"ws://{host}:{port}/ws?client_id={client_id}" + ("&batch=1" if batch else "")
        self.batch = batch
        self.ws: WSTransport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.error: str | None = None
        self.received = 0
        self.paused = False
        self.welcome: dict[str, Any] | None = None

    async def connect(self) -> None:
        await ws_connect(
            lambda: self,
            self.url,
            websocket_handshake_timeout=30,
            max_frame_size=2**24,
            use_aiofastnet=AIOFASTNET,
        )

    # -- WSListener ----------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        if not self.opened.done():
            self.opened.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.close_code is None and self.error is None:
            self.error = "closed without a close frame"
        for fut in (self.opened, self.joined):
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self.id}: connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        # Every protocol frame is a JSON object: a leading "{" says TEXT without reading
        # frame.msg_type, whose conversion to a Python enum costs more than the check.
        if payload[:1] == b"{":
            now = time.time()
            if self.batch:
                for part in payload.split(b"\n"):
                    if part:
                        self.on_text(self, part, now)
            else:
                self.on_text(self, payload, now)
            return
        msg_type = frame.msg_type
        if msg_type is TEXT and payload:
            self.on_text(self, payload, time.time())  # not an object: the owner reports it
        elif msg_type is CLOSE:
            # The raw bytes: picows's close-code enum has no member for 4001 etc.
            payload = frame.get_payload_as_bytes()
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    # -- the loadgen.Client surface ------------------------------------------------

    def send_json(self, obj: Any) -> None:
        if self.ws is not None and not self.ws.is_disconnected:
            self.ws.send(TEXT, orjson.dumps(obj))

    def pause_reading(self) -> None:
        if self.ws is not None:
            self.ws.underlying_transport.pause_reading()

    def resume_reading(self) -> None:
        if self.ws is not None:
            self.ws.underlying_transport.resume_reading()

    def abort(self) -> None:
        if self.ws is not None:
            self.ws.disconnect(graceful=False)

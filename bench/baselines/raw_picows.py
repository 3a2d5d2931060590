"""A bare ``picows`` server: the near-limit reference for fan-out from Python.

picows parses and frames WebSocket in C (Cython) and calls back into Python once
per frame, so what is left per delivery is one Python-level call:
``transport.send(TEXT, message)``, which frames the message and writes it to
the member's socket in C. Fan-out is a plain loop of those calls over the room's
members, with no queue and no backpressure (like ``websockets.broadcast``). What
wirehub spends per delivery above this server is overhead a Python hub could in
principle shed.

Same protocol subset as the other baselines, plus the ``welcome`` wirehub
sends first: ``welcome`` on connect, ``join`` -> ``joined``, ``publish`` ->
every other member gets ``message`` and the publisher gets ``ack``, ``ping`` ->
``pong``.

Run: ``python bench/baselines/raw_picows.py --port 8003`` (uvloop transports,
like the other servers; ``--aiofastnet`` uses picows's own faster transports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from urllib.parse import parse_qs, urlsplit

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

__all__ = ["Member", "main"]

TEXT = WSMsgType.TEXT
#: Messages above this size take the external-buffer path (see ``on_ws_frame``).
LARGE = 8192
#: Room picows needs in front of the message for the frame header.
HEADROOM = 14
#: Every connected, joined member (one room: the benchmark uses one).
members: list[WSTransport] = []
#: Every open connection, joined or not, to abort them all at shutdown.
connected: set[WSTransport] = set()


class Member(WSListener):
    """One client connection: answers the protocol subset, fans out publishes."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.transport: WSTransport | None = None
        self.joined = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        connected.add(transport)
        welcome = {"type": "welcome", "client_id": self.client_id, "node": "raw-picows"}
        transport.send(TEXT, orjson.dumps(welcome))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        connected.discard(transport)
        if self.joined:
            self.joined = False
            with contextlib.suppress(ValueError):
                members.remove(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not TEXT:
            return
        msg = orjson.loads(frame.get_payload_as_memoryview())
        kind = msg.get("type")
        if kind == "publish":
            room, data = msg["room"], msg["data"]
            message = orjson.dumps(
                {"type": "message", "room": room, "from": self.client_id, "data": data}
            )
            # The fan-out: one C call per member, framing and write included.
            if len(message) <= LARGE:
                for member in members:
                    if member is not transport:
                        member.send(TEXT, message)
            else:
                # picows 2.3 sends a frame over 8 KiB as writelines([header view of a
                # reused buffer, message]); uvloop keeps that view when the socket is backed
                # up, the next send rewrites it and the queued frame goes out corrupt. This
                # path frames into our own buffer (one per publish, never changed) and
                # picows copies whatever the socket does not take at once.
                framed = bytearray(HEADROOM) + message
                for member in members:
                    if member is not transport:
                        member.send_reuse_external_bytearray(TEXT, framed, HEADROOM)
            transport.send(TEXT, orjson.dumps({"type": "ack", "ref": msg.get("ref")}))
        elif kind == "join":
            if not self.joined:
                self.joined = True
                members.append(transport)
            transport.send(TEXT, orjson.dumps({"type": "joined", "room": msg["room"]}))
        elif kind == "ping":
            transport.send(TEXT, b'{"type":"pong"}')


def listener_for(request: WSUpgradeRequest) -> Member | None:
    """Route ``/ws?client_id=ID`` to a new member; anything else gets picows's 404."""
    url = urlsplit(request.path.decode("latin-1"))
    if url.path != "/ws":
        return None
    client_id = parse_qs(url.query).get("client_id", [""])[0]
    return Member(client_id)


async def serve_forever(host: str, port: int, aiofastnet: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    server = await ws_create_server(
        listener_for,
        host,
        port,
        websocket_handshake_timeout=30,
        max_frame_size=2**20,
        use_aiofastnet=aiofastnet,
    )
    await stop
    # Stop accepting, then abort every connection so the process exits (and cProfile
    # writes its file) at once.
    server.close()
    for transport in list(connected):
        transport.disconnect(graceful=False)
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument(
        "--aiofastnet", action="store_true", help="picows's aiofastnet transports, not uvloop's"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_forever(args.host, args.port, args.aiofastnet))


if __name__ == "__main__":
    main()

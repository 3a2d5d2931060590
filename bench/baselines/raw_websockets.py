"""A bare ``websockets`` server using ``websockets.broadcast``: the pure-Python ceiling.

``broadcast`` writes the frame into every member's transport synchronously and
never waits, so it is about as cheap as fan-out gets in Python; it also has no
backpressure (a member that stops reading grows its write buffer until the
keepalive ping times out). Same protocol subset as the other servers:
``join`` -> ``joined``, ``publish`` -> ``message`` to the others and ``ack``.

Run: ``python bench/baselines/raw_websockets.py --port 8002`` (uvloop, no
permessage-deflate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

__all__ = ["main"]

members: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    client_id = ""
    request = websocket.request
    if request is not None and "client_id=" in request.path:
        client_id = request.path.split("client_id=", 1)[1].split("&", 1)[0]
    try:
        async for text in websocket:
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "join":
                members.add(websocket)
                await websocket.send(json.dumps({"type": "joined", "room": frame["room"]}))
            elif kind == "publish":
                message = json.dumps(
                    {
                        "type": "message",
                        "room": frame["room"],
                        "from": client_id,
                        "data": frame["data"],
                    }
                )
                broadcast([m for m in members if m is not websocket], message)
                await websocket.send(json.dumps({"type": "ack", "ref": frame.get("ref")}))
            elif kind == "ping":
                await websocket.send('{"type":"pong"}')
    finally:
        members.discard(websocket)


async def serve_forever(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port, compression=None, max_size=2**20):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()

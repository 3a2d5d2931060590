"""The tutorial FastAPI broadcast server: a list of WebSockets and an awaited loop.

This is how most FastAPI "chat" examples fan out: the publisher's handler awaits
``send_text`` on every member in turn, so one member whose socket stops draining
stalls every later member and the publisher itself. It speaks the subset of the
wirehub protocol the benchmark uses: ``join`` -> ``joined``, ``publish`` ->
every other member gets ``message`` and the publisher gets ``ack``.

Run: ``python bench/baselines/naive_fastapi.py --port 8001``. It uses the same
uvicorn options as ``wirehub serve`` (uvloop, httptools, websockets-sansio, no
permessage-deflate) so the comparison is about the fan-out, not the stack.
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

__all__ = ["app", "main"]

app = FastAPI()
connections: list[WebSocket] = []


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, client_id: str = "") -> None:
    await websocket.accept()
    try:
        while True:
            frame = json.loads(await websocket.receive_text())
            kind = frame.get("type")
            if kind == "join":
                connections.append(websocket)
                await websocket.send_text(json.dumps({"type": "joined", "room": frame["room"]}))
            elif kind == "publish":
                message = json.dumps(
                    {
                        "type": "message",
                        "room": frame["room"],
                        "from": client_id,
                        "data": frame["data"],
                    }
                )
                for connection in connections:
                    if connection is not websocket:
                        await connection.send_text(message)
                await websocket.send_text(json.dumps({"type": "ack", "ref": frame.get("ref")}))
            elif kind == "ping":
                await websocket.send_text('{"type":"pong"}')
    except WebSocketDisconnect:
        pass
    finally:
        if websocket in connections:
            connections.remove(websocket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

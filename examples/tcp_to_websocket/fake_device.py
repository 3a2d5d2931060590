"""A fake device for the three example bridges: sends readings, prints what comes back.

python examples/tcp_to_websocket/fake_device.py lines   # port 9001, text lines
python examples/tcp_to_websocket/fake_device.py json    # port 9002, JSON lines
python examples/tcp_to_websocket/fake_device.py binary  # port 9003, length-prefixed binary

``--count N`` sends N readings, then only prints what comes back (until the hub closes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import struct

__all__ = ["main"]

PORTS = {"lines": 9001, "json": 9002, "binary": 9003}


def reading(kind: str, sensor: int) -> bytes:
    temp = round(random.uniform(18, 26), 1)
    humidity = round(random.uniform(30, 60), 1)
    if kind == "lines":
        return f"sensor={sensor} temp={temp} humidity={humidity}\n".encode()
    if kind == "json":
        return json.dumps({"sensor": sensor, "temp": temp, "humidity": humidity}).encode() + b"\n"
    body = struct.pack(">BhH", sensor, round(temp * 10), round(humidity * 10))
    return struct.pack(">I", len(body)) + body


async def print_replies(kind: str, reader: asyncio.StreamReader) -> None:
    while True:
        if kind == "binary":
            try:
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                body = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                break
            print("<-", body.hex(" "))
        else:
            line = await reader.readline()
            if not line:
                break
            print("<-", line.decode(errors="replace").rstrip())
    print("hub closed the connection")


async def run(
    kind: str, host: str, port: int, interval: float, sensor: int, count: int = 0
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    print(f"connected to {host}:{port} as a '{kind}' device; Ctrl-C to stop")
    replies = asyncio.create_task(print_replies(kind, reader))
    sent = 0
    try:
        while not replies.done() and (count <= 0 or sent < count):
            frame = reading(kind, sensor)
            writer.write(frame)
            await writer.drain()
            sent += 1
            print("->", frame.hex(" ") if kind == "binary" else frame.decode().rstrip())
            if count <= 0 or sent < count:
                await asyncio.sleep(interval)
        await replies  # with --count: keep printing what the room sends back
    finally:
        replies.cancel()
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(PORTS), help="which bridge to talk to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default: 9001 / 9002 / 9003 by kind")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--sensor", type=int, default=1, help="sensor number (0-255)")
    parser.add_argument(
        "--count", type=int, default=0, help="stop sending after N readings (default: never)"
    )
    args = parser.parse_args()
    port = args.port or PORTS[args.kind]
    try:
        asyncio.run(run(args.kind, args.host, port, args.interval, args.sensor, args.count))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise SystemExit(f"cannot connect: {exc}") from None


if __name__ == "__main__":
    main()

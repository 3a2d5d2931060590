"""TCP bridge benchmark: TCP → WebSocket and WebSocket → TCP through a real hub.

    .venv/bin/python bench/tcp_bridge.py [--frames 5000] [--rate 500] [--seconds 5]

Starts ``wirehub serve`` in a subprocess with two bridges (``up``: direction in,
room ``up``; ``down``: direction out, room ``down``) and measures, with all
clients in this process:

1. TCP → WS throughput: 10 TCP senders write ``--frames`` lines in total as fast
   as they can; 100 WebSocket subscribers of ``up`` must each receive all of them.
2. TCP → WS latency: the same senders at a fixed total ``--rate`` for
   ``--seconds``; p50/p99 from the TCP write to the WebSocket receive.
3. WS → TCP throughput: 10 WebSocket publishers into ``down``; 100 TCP clients
   of the bridge must each receive every line.
4. WS → TCP latency at the fixed rate.

The clients share one Python process (and, on a small machine, the CPU) with
nothing else; compare figures from the same run rather than across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect

__all__ = ["main"]

SENDERS = 10
RECEIVERS = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_hub(tmp: Path) -> tuple[subprocess.Popen[bytes], int, int, int]:
    http, up, down = free_port(), free_port(), free_port()
    config = tmp / "bench.toml"
    config.write_text(
        f"""
stats_interval = 0
[server]
log_level = "warning"
[heartbeat]
interval = 0
[limits]
queue_max_messages = 100000
queue_max_bytes = 67108864
[[rooms]]
pattern = "*"
history_size = 0
[[bridges]]
name = "up"
port = {up}
room = "up"
direction = "in"
max_clients = 200
[[bridges]]
name = "down"
port = {down}
room = "down"
direction = "out"
max_clients = 200
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "wirehub", "serve", "--config", str(config), "--port", str(http)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", http)) == 0:
                return proc, http, up, down
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the hub did not start")


async def ws_member(url: str, room: str) -> ClientConnection:
    ws = await connect(url, max_size=2**24, ping_interval=None, close_timeout=2)
    await ws.recv()  # welcome
    await ws.send(orjson.dumps({"type": "join", "room": room, "ref": 1}).decode())
    while orjson.loads(await ws.recv()).get("type") != "joined":
        pass
    return ws


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def tcp_to_ws(http: int, port: int, frames: int, rate: float, seconds: float) -> dict:
    url = f"ws://127.0.0.1:{http}/ws"
    subs = [await ws_member(url, "up") for _ in range(RECEIVERS)]
    senders = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SENDERS)]

    async def receive(ws: ClientConnection, want: int, latencies: list[float] | None) -> None:
        got = 0
        while got < want:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") != "message":
                continue
            got += 1
            if latencies is not None:
                latencies.append(time.perf_counter() - float(frame["data"]))

    progress("TCP → WS: burst")
    per_sender = frames // SENDERS
    total = per_sender * SENDERS
    waiters = [asyncio.create_task(receive(ws, total, None)) for ws in subs]
    started = time.perf_counter()
    for _, writer in senders:
        writer.write(b"".join(b"%d\n" % i for i in range(per_sender)))
    await asyncio.gather(*(w.drain() for _, w in senders))
    await asyncio.gather(*waiters)
    elapsed = time.perf_counter() - started

    progress("TCP → WS: latency at a fixed rate")
    latencies: list[float] = []
    count = int(rate * seconds)
    per = count // SENDERS
    waiters = [asyncio.create_task(receive(ws, per * SENDERS, latencies)) for ws in subs]

    async def paced(writer: asyncio.StreamWriter) -> None:
        interval = SENDERS / rate
        next_at = time.perf_counter()
        for _ in range(per):
            writer.write(b"%.9f\n" % time.perf_counter())
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(paced(w) for _, w in senders))
    await asyncio.gather(*waiters)
    await asyncio.gather(*(ws.close() for ws in subs))
    for _, writer in senders:
        writer.close()
    return {
        "frames": total,
        "frames_per_s": total / elapsed,
        "deliveries_per_s": total * RECEIVERS / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "latency_samples": len(latencies),
    }


async def ws_to_tcp(http: int, port: int, frames: int, rate: float, seconds: float) -> dict:
    url = f"ws://127.0.0.1:{http}/ws"
    pubs = [await ws_member(url, "down") for _ in range(SENDERS)]
    receivers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(RECEIVERS)]
    # Publishers get each other's messages: drain them so they are never slow.
    drains = [asyncio.create_task(_drain(ws)) for ws in pubs]
    await asyncio.sleep(0.5)  # let the hub register every TCP client

    async def receive(reader: asyncio.StreamReader, want: int, lat: list[float] | None) -> None:
        for _ in range(want):
            line = await reader.readline()
            if lat is not None:
                lat.append(time.perf_counter() - float(orjson.loads(line)))

    progress("WS → TCP: burst")
    per_pub = frames // SENDERS
    total = per_pub * SENDERS
    waiters = [asyncio.create_task(receive(r, total, None)) for r, _ in receivers]
    started = time.perf_counter()

    async def burst(ws: ClientConnection) -> None:
        for i in range(per_pub):
            await ws.send(f'{{"type":"publish","room":"down","data":{i}}}')

    await asyncio.gather(*(burst(ws) for ws in pubs))
    await asyncio.gather(*waiters)
    elapsed = time.perf_counter() - started

    progress("WS → TCP: latency at a fixed rate")
    latencies: list[float] = []
    per = int(rate * seconds) // SENDERS
    waiters = [asyncio.create_task(receive(r, per * SENDERS, latencies)) for r, _ in receivers]

    async def paced(ws: ClientConnection) -> None:
        interval = SENDERS / rate
        next_at = time.perf_counter()
        for _ in range(per):
            await ws.send(f'{{"type":"publish","room":"down","data":{time.perf_counter():.9f}}}')
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(paced(ws) for ws in pubs))
    await asyncio.gather(*waiters)
    for task in drains:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in pubs))
    for _, writer in receivers:
        writer.close()
    return {
        "frames": total,
        "frames_per_s": total / elapsed,
        "deliveries_per_s": total * RECEIVERS / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "latency_samples": len(latencies),
    }


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, http, up, down = start_hub(Path(tmp))
        try:
            up_stats = await tcp_to_ws(http, up, args.frames, args.rate, args.seconds)
            down_stats = await ws_to_tcp(http, down, args.frames, args.rate, args.seconds)
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        f"# {SENDERS} senders → {RECEIVERS} receivers, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        "| direction | frames/s (published) | deliveries/s "
        f"| p50 ms @ {args.rate:g}/s | p99 ms @ {args.rate:g}/s |"
    )
    print("|---|---|---|---|---|")
    for name, s in (("TCP → WebSocket", up_stats), ("WebSocket → TCP", down_stats)):
        print(
            f"| {name} | {s['frames_per_s']:,.0f} | {s['deliveries_per_s']:,.0f} "
            f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="TCP bridge throughput and latency")
    parser.add_argument("--frames", type=int, default=5000, help="frames in each burst")
    parser.add_argument("--rate", type=float, default=200.0, help="frames/s for the latency runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each latency run")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

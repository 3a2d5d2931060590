"""Attacks against a real ``wirehub serve``: what each costs the hub and its honest clients.

    .venv/bin/python bench/hostile.py [--seconds 6] [--only ping_flood,slowloris]

For every scenario a fresh ``wirehub serve`` runs with the default settings (plus a job
module with a flood job). While the attack runs in a separate process, this process
keeps an honest publisher and subscriber busy in room ``honest`` (one publish every
20 ms), polls ``/healthz`` every 50 ms and samples the hub's RSS every 100 ms. Printed,
per scenario: RSS growth, /healthz p50/p99/max, the honest room's loss and p99 latency,
and what happened to the attacker. ``none`` is the same run without an attack: compare
against it, not against absolute times (these machines are shared and noisy).

Attacks (each bounded in bytes and seconds):

* ``request_line``: 100 sockets each sending a 1 MiB request line;
* ``endless_header``: 4 sockets streaming one header line of up to 64 MiB each;
* ``many_headers``: 100 sockets sending 10 000 headers each;
* ``slowloris``: 200 sockets sending one header byte a second;
* ``ping_flood``: one WebSocket that never reads, sending 1 000 000 pings;
* ``room_table``: 100 000 rooms with history (the table full, counting the honest room and
  99 900 fillers), then 1 000 joins of new names;
* ``job_flood``: a job calling ``ctx.output`` 300 000 times for a submitter that reads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from websockets.asyncio.client import connect

HERE = Path(__file__).parent
ROOT = HERE.parent

JOBS_MODULE = """
from wirehub.jobs import JobContext, job


@job(name="flood", timeout=600)
def flood(ctx: JobContext, n: int = 300_000) -> int:
    for i in range(n):
        ctx.output({"i": i})
    return n
"""


# ---------------------------------------------------------------------------- the hub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        self.port = free_port()
        config = workdir / "hub.toml"
        config.write_text(f'[jobs]\nmodules = ["hostile_jobs"]\n{extra_config}')
        (workdir / "hostile_jobs.py").write_text(JOBS_MODULE)
        path = os.pathsep.join(p for p in (str(workdir), os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONPATH=path)
        cmd = [sys.executable, "-m", "wirehub", "serve", "--port", str(self.port)]
        cmd += ["--config", str(config)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if b"Uvicorn running on" in raw:
                break
        else:
            raise RuntimeError("wirehub serve exited before it was ready")
        threading.Thread(target=self._drain, daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ raw-socket attacks

UPGRADE = (
    "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
)


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def masked(opcode: int, payload: bytes = b"") -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + data


async def _answer(reader: asyncio.StreamReader, timeout: float) -> str:
    """The status line the hub answered with, or how the socket ended."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return "no answer"
    except (ConnectionError, OSError):
        return "reset"
    return line.decode(errors="replace").strip()[:40] or "closed"


async def _send_until_closed(
    writer: asyncio.StreamWriter, chunks: Any, deadline: float
) -> tuple[int, bool]:
    sent = 0
    try:
        for chunk in chunks:
            if time.monotonic() > deadline:
                return sent, False
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except (ConnectionError, OSError):
        return sent, True
    return sent, False


async def attack_request_line(port: int, seconds: float) -> str:
    async def one() -> tuple[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        chunks = [b"GET /ws?x="] + [b"A" * 65536] * 16 + [b" HTTP/1.1\r\n"]
        sender = asyncio.ensure_future(_send_until_closed(writer, chunks, t0 + seconds))
        status = await _answer(reader, seconds)
        elapsed = time.monotonic() - t0
        sender.cancel()
        writer.close()
        return status, elapsed

    results = await asyncio.gather(*(one() for _ in range(100)))
    return _summary(results)


async def attack_many_headers(port: int, seconds: float) -> str:
    async def one() -> tuple[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        head = f"GET /ws HTTP/1.1\r\n{UPGRADE.format(key=_key())}".encode()
        chunks = [head] + [f"X-H{i}: v\r\n".encode() for i in range(10_000)] + [b"\r\n"]
        sender = asyncio.ensure_future(_send_until_closed(writer, chunks, t0 + seconds))
        status = await _answer(reader, seconds)
        elapsed = time.monotonic() - t0
        sender.cancel()
        writer.close()
        return status, elapsed

    results = await asyncio.gather(*(one() for _ in range(100)))
    return _summary(results)


async def attack_endless_header(port: int, seconds: float) -> str:
    async def one() -> tuple[str, float, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        head = f"GET /ws HTTP/1.1\r\n{UPGRADE.format(key=_key())}X-Endless: ".encode()
        chunks = [head] + [b"A" * 65536] * 1024  # 64 MiB
        sender = asyncio.ensure_future(_send_until_closed(writer, chunks, t0 + seconds))
        status = await _answer(reader, seconds)
        elapsed = time.monotonic() - t0
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
        return status, elapsed, 0

    results = await asyncio.gather(*(one() for _ in range(4)))
    return _summary([(s, e) for s, e, _ in results])


async def attack_slowloris(port: int, seconds: float) -> str:
    async def one() -> tuple[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        request = f"GET /ws HTTP/1.1\r\n{UPGRADE.format(key=_key())}X-Slow: ".encode()
        closed = asyncio.ensure_future(reader.read(4096))
        for i in range(int(seconds)):
            if closed.done():
                break
            try:
                writer.write(request[i : i + 1] if i < len(request) else b"a")
                await writer.drain()
            except (ConnectionError, OSError):
                break
            await asyncio.wait({closed}, timeout=1.0)
        elapsed = time.monotonic() - t0
        state = "closed by hub" if closed.done() else "still open"
        closed.cancel()
        writer.close()
        return state, elapsed

    results = await asyncio.gather(*(one() for _ in range(200)))
    return _summary(results)


async def _raw_ws(port: int, path: str = "/ws") -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\n{UPGRADE.format(key=_key())}\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head, head
    return reader, writer


async def attack_ping_flood(port: int, seconds: float) -> str:
    # A small receive buffer, never read: the hub's pongs pile up on its side.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /ws HTTP/1.1\r\n{UPGRADE.format(key=_key())}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    t0 = time.monotonic()
    ping = masked(0x9, b"p" * 16)
    batch = ping * 1000
    sent = 0
    sock.settimeout(1.0)
    outcome = "still open"
    try:
        while sent < 1_000_000 and time.monotonic() - t0 < seconds:
            sock.sendall(batch)
            sent += 1000
    except TimeoutError:
        outcome = "hub stopped reading"
    except (ConnectionError, OSError):
        outcome = "closed by hub"
    if outcome == "still open":
        outcome = f"still open after {sent} pings"
    else:
        outcome += f" after {sent} pings, {time.monotonic() - t0:.1f} s"
    sock.close()
    return outcome


async def attack_room_table(port: int, seconds: float) -> str:
    # Filled beforehand by prepare_room_table; 1 000 joins of new names as fast as allowed.
    reader, writer = await _raw_ws(port)
    refused = accepted = 0
    reads = asyncio.ensure_future(_count_replies(reader))
    t0 = time.monotonic()
    for i in range(1000):
        # Join and leave: each join needs a new room (the per-connection cap never binds).
        writer.write(masked(0x1, orjson.dumps({"type": "join", "room": f"attack-{i}", "ref": i})))
        writer.write(masked(0x1, orjson.dumps({"type": "leave", "room": f"attack-{i}"})))
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        accepted, refused = await asyncio.wait_for(asyncio.shield(reads), seconds)
    reads.cancel()
    writer.close()
    return f"{accepted} joined, {refused} refused in {time.monotonic() - t0:.1f} s"


async def _count_replies(reader: asyncio.StreamReader) -> tuple[int, int]:
    joined = refused = 0
    while joined + refused < 1000:
        head = await reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        frame = orjson.loads(await reader.readexactly(size))
        if frame.get("type") == "joined":
            joined += 1
        elif frame.get("type") == "error" and "ref" in frame:
            refused += 1  # a refused join; the leave that follows it is refused too, unref'd
    return joined, refused


async def attack_job_flood(port: int, seconds: float) -> str:
    received = 0
    t0 = time.monotonic()
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=2**24) as ws:
        await ws.recv()
        await ws.send(orjson.dumps({"type": "job.submit", "job": "flood", "args": {}}).decode())
        outcome = "timeout"
        while time.monotonic() - t0 < seconds:
            try:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), seconds))
            except Exception as exc:
                outcome = f"closed: {exc}"
                break
            kind = frame.get("type")
            if kind == "job.output":
                received += len(frame["items"]) if "items" in frame else 1
            elif kind in ("job.result", "job.failed"):
                outcome = kind
                break
    return f"{outcome}, {received} outputs received in {time.monotonic() - t0:.1f} s"


def _summary(results: list[tuple[str, float]]) -> str:
    by_status: dict[str, list[float]] = {}
    for status, elapsed in results:
        by_status.setdefault(status, []).append(elapsed)
    parts = [
        f"{len(times)} x {status} (median {statistics.median(times) * 1000:.0f} ms)"
        for status, times in sorted(by_status.items())
    ]
    return "; ".join(parts)


ATTACKS: dict[str, Callable[[int, float], Awaitable[str]]] = {
    "request_line": attack_request_line,
    "endless_header": attack_endless_header,
    "many_headers": attack_many_headers,
    "slowloris": attack_slowloris,
    "ping_flood": attack_ping_flood,
    "room_table": attack_room_table,
    "job_flood": attack_job_flood,
}

#: Attacks that need longer than the default window to show their end.
WINDOW = {"slowloris": 20.0, "job_flood": 90.0}


def _attack_process(name: str, port: int, seconds: float, out: Any) -> None:
    out.send(asyncio.run(ATTACKS[name](port, seconds)))


# ---------------------------------------------------------------- preparation


async def prepare_room_table(ws_url: str, rooms: int = 99_900, workers: int = 100) -> None:
    """Fill the table: rooms with history and no members, as a quiet afternoon leaves them."""

    async def fill(start: int, count: int) -> None:
        async with connect(ws_url) as ws:
            await ws.recv()
            i = start
            while i < start + count:
                room = f"filler-{i}"
                await ws.send(orjson.dumps({"type": "join", "room": room}).decode())
                await ws.send(orjson.dumps({"type": "publish", "room": room, "data": i}).decode())
                await ws.send(orjson.dumps({"type": "leave", "room": room, "ref": i}).decode())
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame.get("type") == "left":
                        i += 1
                        break
                    if frame.get("type") == "error" and frame.get("ref") == i:
                        await asyncio.sleep(0.2)  # rate-limited: the same room again
                        break

    per = rooms // workers
    await asyncio.gather(*(fill(w * per, per) for w in range(workers)))


# ---------------------------------------------------------------- the honest probe


async def _answer_pings(ws: Any) -> None:
    """Stay alive through the hub's heartbeat: a pong for every ping."""
    async for raw in ws:
        if orjson.loads(raw).get("type") == "ping":
            await ws.send('{"type":"pong"}')


class Probe:
    """An honest publisher/subscriber pair, a /healthz poller and an RSS sampler."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.latencies: list[float] = []
        self.health: list[float] = []
        self.rss: list[int] = []
        self.sent = 0
        self.received = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with (
            connect(self.hub.ws + "?client_id=honest-sub", max_size=2**24) as sub,
            connect(self.hub.ws + "?client_id=honest-pub") as pub,
        ):
            for ws in (sub, pub):
                await ws.recv()
                await ws.send('{"type":"join","room":"honest","ref":1}')
                reply = orjson.loads(await ws.recv())
                while reply.get("type") not in ("joined", "error"):
                    reply = orjson.loads(await ws.recv())
                if reply["type"] == "error":
                    raise RuntimeError(f"the honest join was refused: {reply}")
            tasks = [
                asyncio.ensure_future(self._receive(sub)),
                asyncio.ensure_future(self._publish(pub, stop)),
                asyncio.ensure_future(self._poll(stop)),
            ]
            await tasks[1]
            # Let the last publishes arrive (bounded), then stop.
            deadline = time.monotonic() + 5
            while self.received < self.sent and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish(self, ws: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            data = {"t": time.perf_counter()}
            await ws.send(
                orjson.dumps({"type": "publish", "room": "honest", "data": data}).decode()
            )
            self.sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)

    async def _receive(self, ws: Any) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame.get("type") == "message" and frame.get("room") == "honest":
                self.latencies.append(time.perf_counter() - frame["data"]["t"])
                self.received += 1

    async def _poll(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.hub.http, timeout=30) as http:
            while not stop.is_set():
                t0 = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    await http.get("/healthz")
                    self.health.append(time.perf_counter() - t0)
                self.rss.append(self.hub.rss())
                await asyncio.sleep(0.05)


async def loop_lag_over(hub: Hub, threshold: float) -> tuple[int, int]:
    """The hub's own loop-lag samples (every 100 ms) above ``threshold`` s, of all."""
    async with httpx.AsyncClient(base_url=hub.http, timeout=30) as http:
        text = (await http.get("/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("wirehub_loop_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    if not counts:
        return 0, 0  # a hub without the histogram (before it existed)
    total = counts["+Inf"]
    return int(total - counts[repr(threshold)]), int(total)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def scenario(name: str, seconds: float, workdir: Path) -> dict[str, Any]:
    hub = Hub(workdir)
    try:
        keeper = None
        if name == "room_table":
            # The honest room exists before the table fills (a keeper stays joined).
            keeper = await connect(hub.ws + "?client_id=keeper")
            await keeper.recv()
            await keeper.send('{"type":"join","room":"honest"}')
            await keeper.recv()
            keeper_task = asyncio.ensure_future(_answer_pings(keeper))
            await prepare_room_table(hub.ws)
        rss0 = hub.rss()
        probe = Probe(hub)
        stop = asyncio.Event()
        probe_task = asyncio.ensure_future(probe.run(stop))
        await asyncio.sleep(0.5)  # the probe is joined and publishing before the attack
        outcome = "-"
        if name != "none":
            window = WINDOW.get(name, seconds)
            parent, child = multiprocessing.Pipe()
            proc = multiprocessing.get_context("spawn").Process(
                target=_attack_process, args=(name, hub.port, window, child)
            )
            proc.start()
            loop = asyncio.get_running_loop()
            ready = await loop.run_in_executor(None, parent.poll, window + 30)
            outcome = parent.recv() if ready else "attacker hung"
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        else:
            await asyncio.sleep(seconds)
        stop.set()
        await probe_task
        lag_over, lag_total = await loop_lag_over(hub, 0.01)
        if keeper is not None:
            keeper_task.cancel()
            await keeper.close()
        rss_peak = max([rss0, *probe.rss])
        return {
            "scenario": name,
            "rss_mib": (rss_peak - rss0) / 2**20,
            "health": [x * 1000 for x in probe.health],
            "loss": probe.sent - probe.received,
            "sent": probe.sent,
            "p99": pct(probe.latencies, 0.99) * 1000,
            "p50": pct(probe.latencies, 0.5) * 1000,
            "outcome": outcome,
            "lag": f"{lag_over} of {lag_total}",
        }
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    opts = parser.parse_args()
    names = ["none", *ATTACKS]
    if opts.only:
        names = ["none", *[n for n in opts.only.split(",") if n and n != "none"]]
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                row = asyncio.run(scenario(name, opts.seconds, Path(tmp)))
            except Exception as exc:
                print(f"{name:<15} failed: {exc!r}", flush=True)
                continue
        rows.append(row)
        h = row["health"]
        print(
            f"{name:<15} rss +{row['rss_mib']:6.1f} MiB  healthz p50 {pct(h, 0.5):6.1f} "
            f"p99 {pct(h, 0.99):7.1f} max {max(h, default=float('nan')):7.1f} ms  "
            f"honest loss {row['loss']}/{row['sent']} p50 {row['p50']:6.1f} "
            f"p99 {row['p99']:7.1f} ms  loop lag >10 ms: {row['lag']}  "
            f"attacker: {row['outcome']}",
            flush=True,
        )
    print()
    columns = ["attack", "hub RSS growth", "/healthz p50 / p99 / max", "honest loss"]
    print("| " + " | ".join([*columns, "honest p99", "loop lag > 10 ms", "attacker"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        h = row["health"]
        print(
            f"| {row['scenario']} | {row['rss_mib']:.1f} MiB | {pct(h, 0.5):.1f} / "
            f"{pct(h, 0.99):.1f} / {max(h, default=float('nan')):.1f} ms | "
            f"{row['loss']} of {row['sent']} | {row['p99']:.1f} ms | {row['lag']} | "
            f"{row['outcome']} |"
        )


if __name__ == "__main__":
    main()

"""A job flooding its outputs: does the hub stay responsive and deliver every output?

    .venv/bin/python bench/job_flood.py [--n 300000] [--job flood|flood_async|flood_cpu]
                                        [--runner local|celery]

Starts a real ``wirehub serve`` (default settings plus ``[jobs] modules =
["flood_jobs"]``; with ``--runner celery`` also redis-server and one ``wirehub
worker``). One job calls ``ctx.output({"i": i})`` ``n`` times as fast as it can
(bench/flood_jobs.py). Meanwhile:

* the submitter (its own process, reading as fast as it can) counts every output it
  receives and checks their order;
* a probe calls ``GET /healthz`` every 20 ms (latency max);
* one client publishes into an unrelated room every 10 ms and another member
  measures how late each message arrives (p50 / p99 / max);
* the hub's RSS is sampled every 50 ms (growth = max during the flood - before).

Targets (issue 11, item 6): every output delivered, /healthz max ≤ 100 ms, room
p99 ≤ 50 ms, RSS growth ≤ 32 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HERE = Path(__file__).parent
FINAL = ("job.result", "job.failed", "job.cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], ready: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    seen: list[str] = []
    for raw in proc.stdout:
        seen.append(raw.decode(errors="replace"))
        if ready in seen[-1]:
            break
    else:
        raise RuntimeError(f"{args[0]} exited before printing {ready!r}:\n{''.join(seen)}")
    # Keep draining output so the child never blocks on a full pipe.
    threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- the submitter (its own process, so its parsing does not slow the probes) --------


def submitter(url: str, job: str, n: int, out: Any) -> None:
    out.put(asyncio.run(_submit(url, job, n)))


async def _submit(url: str, job: str, n: int) -> dict[str, Any]:
    items = frames = 0
    expected = 0
    in_order = True
    close = None
    final: dict[str, Any] = {}
    async with connect(url, max_size=2**24) as ws:
        await ws.recv()  # welcome
        await ws.send(orjson.dumps({"type": "job.submit", "job": job, "args": {"n": n}}).decode())
        t0 = time.perf_counter()
        try:
            while True:
                frame = orjson.loads(await ws.recv())
                kind = frame.get("type")
                if kind == "job.output":
                    frames += 1
                    batch = frame["items"] if "items" in frame else [frame["data"]]
                    for item in batch:
                        in_order = in_order and item["i"] == expected
                        expected += 1
                    items += len(batch)
                elif kind in FINAL:
                    final = frame
                    break
        except ConnectionClosed as exc:
            close = exc.rcvd.code if exc.rcvd else None
        elapsed = time.perf_counter() - t0
    return {
        "items": items,
        "frames": frames,
        "in_order": in_order,
        "close": close,
        "final": final.get("type"),
        "elapsed": elapsed,
    }


# -- the probes (in this process) ----------------------------------------------------


class Probes:
    def __init__(self, http: str, ws: str, pid: int) -> None:
        self.http, self.ws = http, ws
        self.proc = psutil.Process(pid)
        self.health: list[float] = []
        self.room: list[float] = []
        self.rss: list[int] = []
        self.loop_lag: list[float] = []  # the hub's own worst loop lag per stats period
        self.stopping = False

    def reset(self) -> None:
        self.health.clear()
        self.room.clear()
        self.rss.clear()
        self.loop_lag.clear()

    async def healthz(self) -> None:
        async with httpx.AsyncClient(base_url=self.http) as http:
            while not self.stopping:
                t0 = time.perf_counter()
                (await http.get("/healthz")).raise_for_status()
                self.health.append(time.perf_counter() - t0)
                await asyncio.sleep(0.02)

    async def chat(self) -> None:
        async with connect(self.ws) as sender, connect(self.ws) as member:
            for ws in (sender, member):
                await ws.recv()  # welcome
                await ws.send(
                    orjson.dumps({"type": "join", "room": "bench-chat", "ref": "j"}).decode()
                )
                while orjson.loads(await ws.recv()).get("type") != "joined":
                    pass

            join = {"type": "join", "room": "$hub.stats", "ref": "s"}
            await member.send(orjson.dumps(join).decode())

            async def read() -> None:
                while True:
                    frame = orjson.loads(await member.recv())
                    if frame.get("type") != "message":
                        continue
                    if frame["room"] == "$hub.stats":
                        self.loop_lag.append(frame["data"].get("loop_lag_max_ms", 0.0) / 1000)
                    else:
                        self.room.append(time.perf_counter() - frame["data"]["t"])

            async def drain() -> None:  # the sender reads its acks like any client
                while True:
                    await sender.recv()

            reader = asyncio.ensure_future(read())
            drainer = asyncio.ensure_future(drain())
            try:
                while not self.stopping:
                    data = {"t": time.perf_counter()}
                    frame = {"type": "publish", "room": "bench-chat", "data": data}
                    await sender.send(orjson.dumps(frame).decode())
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # the last messages arrive
            finally:
                reader.cancel()
                drainer.cancel()

    async def memory(self) -> None:
        while not self.stopping:
            self.rss.append(self.proc.memory_info().rss)
            await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def run(http: str, ws: str, pid: int, job: str, n: int) -> None:
    # Warm up: imports, thread pool, first job.
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    warm = ctx.Process(target=submitter, args=(ws, job, 2000, out))
    warm.start()
    await asyncio.to_thread(out.get, True, 60)
    await asyncio.to_thread(warm.join)
    await asyncio.sleep(0.5)
    proc = psutil.Process(pid)
    rss_before = proc.memory_info().rss
    probes = Probes(http, ws, pid)
    tasks = [asyncio.ensure_future(c) for c in (probes.healthz(), probes.chat(), probes.memory())]
    await asyncio.sleep(4.5)  # idle: what this machine gives without the flood
    idle = (list(probes.health), list(probes.room), list(probes.loop_lag))
    probes.reset()
    cpu_before = sum(proc.cpu_times()[:2])
    flood = ctx.Process(target=submitter, args=(ws, job, n, out))
    flood.start()
    result = await asyncio.to_thread(out.get, True, 600)
    probes.stopping = True
    await asyncio.to_thread(flood.join)
    await asyncio.gather(*tasks)
    rss_after = proc.memory_info().rss
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    mib = 1024 * 1024
    ok = result["items"] == n and result["in_order"] and result["final"] == "job.result"
    idle_lag = max(idle[2], default=float("nan"))
    print(
        f"idle (no job): /healthz max {max(idle[0]) * 1e3:.1f} ms, other room p99 "
        f"{pct(idle[1], 0.99) * 1e3:.1f} ms, hub loop lag max {idle_lag * 1e3:.1f} ms"
    )
    print(f"job {job}: {n} outputs")
    print(
        f"  submitter   received {result['items']} outputs in {result['frames']} frames, "
        f"in order: {result['in_order']}, final: {result['final']}, close code: "
        f"{result['close']}, {result['elapsed']:.2f} s ({n / result['elapsed']:,.0f} outputs/s)"
    )
    print(
        f"  /healthz    {len(probes.health)} probes, p50 {pct(probes.health, 0.5) * 1e3:.1f} ms, "
        f"max {max(probes.health) * 1e3:.1f} ms   (target max <= 100 ms)"
    )
    print(
        f"  other room  {len(probes.room)} messages, p50 {pct(probes.room, 0.5) * 1e3:.1f} ms, "
        f"p99 {pct(probes.room, 0.99) * 1e3:.1f} ms, max {max(probes.room) * 1e3:.1f} ms   "
        f"(target p99 <= 50 ms)"
    )
    print(
        f"  hub RSS     {rss_before / mib:.0f} MiB before, {max(probes.rss) / mib:.0f} MiB max, "
        f"{rss_after / mib:.0f} MiB after: growth {(max(probes.rss) - rss_before) / mib:.1f} MiB"
        f"   (target <= 32 MiB)"
    )
    lag = max(probes.loop_lag, default=float("nan"))
    print(
        f"  hub         worst loop lag per 2 s stats period {lag * 1e3:.1f} ms; "
        f"CPU {cpu:.2f} s for the flood ({cpu / n * 1e6:.2f} us per output)"
    )
    load = os.getloadavg()[0]
    print(f"  machine     load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"  all outputs delivered in order: {ok}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--job", default="flood", choices=["flood", "flood_async", "flood_cpu"])
    parser.add_argument("--runner", default="local", choices=["local", "celery"])
    opts = parser.parse_args()
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="wirehub-flood-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = tmp / "hub.toml"
        text = ""
        if opts.runner == "celery":
            redis_port = free_port()
            binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
            procs.append(
                start(
                    [binary, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                    "Ready to accept connections",
                    env,
                )
            )
            text += f'redis_url = "redis://127.0.0.1:{redis_port}/0"\n'
        text += f'[jobs]\nmodules = ["flood_jobs"]\nrunner = "{opts.runner}"\n'
        text += f'[uploads]\ndir = "{tmp / "spool"}"\n'
        config.write_text(text)
        if opts.runner == "celery":
            worker = [sys.executable, "-m", "wirehub", "worker", "--config", str(config)]
            procs.append(start(worker, "wirehub worker ready", env))
        port = free_port()
        serve = [sys.executable, "-m", "wirehub", "serve", "--config", str(config)]
        hub = start([*serve, "--port", str(port)], "Uvicorn running on", env)
        procs.append(hub)
        asyncio.run(
            run(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", hub.pid, opts.job, opts.n)
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

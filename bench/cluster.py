"""Cross-node fan-out through Redis, against one node, in the same run.

Run from the repository root (needs ``redis-server`` on PATH)::

    .venv/bin/python bench/cluster.py            # 3 repetitions
    .venv/bin/python bench/cluster.py --quick    # 1 repetition, smaller counts

Scenarios, each a fresh set of ``wirehub serve`` processes on free ports, with
the load from bench/loadgen.py subprocesses (one publisher, one subscriber
process per node):

* ``single``: one embedded node (no Redis): the publisher and all N subscribers on it.
* ``single+redis``: the same one node with ``redis_url`` set (the broker's own cost).
* ``cluster``: nodes A and B sharing a private redis-server; the publisher on A,
  N/2 subscribers on A and N/2 on B.

Printed per scenario: deliveries/s (messages received by all subscribers over
the publish-to-last-delivery span), latency p50/p99 (publisher clock to
subscriber clock, same machine) and the ratio to ``single`` within the same
repetition. Figures are medians over the repetitions (docs/benchmarks.md,
"Scale-out").
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOADGEN = str(ROOT / "bench" / "loadgen.py")
SCENARIOS = ("single", "single+redis", "cluster")
#: Tasks reading the servers' output until they exit.
DRAINS: set[asyncio.Future[bytes]] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def read_until(stream: asyncio.StreamReader, needle: str, timeout: float) -> None:
    async def scan() -> None:
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError(f"process exited before printing {needle!r}")
            if needle in line.decode(errors="replace"):
                return

    await asyncio.wait_for(scan(), timeout)


async def start_redis() -> asyncio.subprocess.Process:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    await read_until(proc.stdout, "Ready to accept connections", 10)
    proc.port = port  # type: ignore[attr-defined]
    DRAINS.add(asyncio.ensure_future(proc.stdout.read()))  # keep the pipe drained
    return proc


async def start_node(redis_url: str | None, prefix: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "WIREHUB_STATS_INTERVAL": "0",
        "WIREHUB_HEARTBEAT__INTERVAL": "0",
        "WIREHUB_LIMITS__QUEUE_MAX_MESSAGES": "100000",
        "WIREHUB_LIMITS__QUEUE_MAX_BYTES": str(256 * 1024 * 1024),
        "WIREHUB_ROOMS": '[{"pattern": "bench", "presence_events": false}]',
    }
    if redis_url:
        env |= {"WIREHUB_REDIS_URL": redis_url, "WIREHUB_REDIS__PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        *("-m", "wirehub", "serve", "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    await read_until(proc.stdout, "Uvicorn running on", 30)
    DRAINS.add(asyncio.ensure_future(proc.stdout.read()))
    return proc, port


async def loadgen(*args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        LOADGEN,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    return proc


async def event(proc: asyncio.subprocess.Process, name: str, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None

    async def scan() -> dict[str, Any]:
        while True:
            line = await proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"loadgen exited before '{name}'")
            obj = json.loads(line)
            if obj.get("event") == name:
                return obj

    return await asyncio.wait_for(scan(), timeout)


def tell(proc: asyncio.subprocess.Process, word: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{word}\n".encode())


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_scenario(
    name: str, redis_port: int, subscribers: int, messages: int, window: int, tmp: Path
) -> dict[str, float]:
    redis_url = None if name == "single" else f"redis://127.0.0.1:{redis_port}/0"
    prefix = f"bench{time.monotonic_ns()}"
    count = 2 if name == "cluster" else 1
    nodes = [await start_node(redis_url, prefix) for _ in range(count)]
    subs: list[asyncio.subprocess.Process] = []
    pub: asyncio.subprocess.Process | None = None
    try:
        share = [subscribers // count + (1 if i < subscribers % count else 0) for i in range(count)]
        outs = [tmp / f"{name}-{i}.lat" for i in range(count)]
        for i, (_, port) in enumerate(nodes):
            subs.append(
                await loadgen(
                    "sub",
                    *("--port", str(port), "--prefix", f"s{i}-", "--clients", str(share[i])),
                    *("--expect", str(messages), "--out", str(outs[i])),
                )
            )
        for proc in subs:
            await event(proc, "ready", 60)
        pub = await loadgen(
            "pub",
            *("--port", str(nodes[0][1]), "--prefix", "p-", "--count", str(messages)),
            *("--window", str(window)),
        )
        await event(pub, "ready", 30)
        tell(pub, "go")
        published = await event(pub, "result", 300)
        for proc in subs:
            with contextlib.suppress(TimeoutError):
                await event(proc, "done", 30)
            tell(proc, "stop")
        results = [await event(proc, "result", 30) for proc in subs]
        received = sum(r["received"] for r in results)
        expected = sum(r["expected"] for r in results)
        last = max(r["last"] or 0 for r in results)
        span = max(last - published["started"], 1e-9)
        latencies = array.array("d")
        for out in outs:
            with open(out, "rb") as f:  # noqa: ASYNC230 - after the measurement
                latencies.frombytes(f.read())
        ordered = sorted(latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0

        return {
            "deliveries_per_s": received / span,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "lost": expected - received,
        }
    finally:
        for proc in [*subs, *([pub] if pub else [])]:
            with contextlib.suppress(Exception):
                proc.kill()
                await proc.wait()
        for proc, _ in nodes:
            await stop(proc)


async def amain(args: argparse.Namespace) -> None:
    redis = await start_redis()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeat):
                for name in SCENARIOS:
                    figures = await run_scenario(
                        name,
                        redis.port,  # type: ignore[attr-defined]
                        args.subscribers,
                        args.messages,
                        args.window,
                        Path(tmp),
                    )
                    figures["ratio"] = (
                        figures["deliveries_per_s"] / rows["single"][-1]["deliveries_per_s"]
                        if name != "single"
                        else 1.0
                    )
                    rows[name].append(figures)
                    print(
                        f"rep {rep + 1} {name:13s} {figures['deliveries_per_s']:>10,.0f} del/s "
                        f"p50 {figures['p50_ms']:6.1f} ms p99 {figures['p99_ms']:7.1f} ms "
                        f"lost {figures['lost']:.0f}",
                        flush=True,
                    )
    finally:
        await stop(redis)
    print()
    print(
        f"{args.subscribers} subscribers, {args.messages} messages, window {args.window}, "
        f"median of {args.repeat}"
    )
    print(
        f"{'scenario':14s} {'deliveries/s':>13s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs single':>10s}"
    )
    for name in SCENARIOS:

        def med(key: str, name: str = name) -> float:
            return statistics.median(r[key] for r in rows[name])

        print(
            f"{name:14s} {med('deliveries_per_s'):>13,.0f} {med('p50_ms'):>8.1f} "
            f"{med('p99_ms'):>8.1f} {med('ratio'):>9.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=20, help="unacknowledged publishes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.subscribers, args.messages = 1, 100, 500
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()

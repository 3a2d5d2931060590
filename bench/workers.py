"""Fan-out of ``wirehub serve --workers 2`` against one process, in the same run.

Run from the repository root (needs ``redis-server`` on PATH)::

    .venv/bin/python bench/workers.py            # 3 repetitions
    .venv/bin/python bench/workers.py --quick    # 1 repetition, smaller counts

Scenarios, each a fresh ``wirehub serve`` on a free port, with the load from
bench/loadgen.py subprocesses (one publisher, two subscriber processes, all on
the one port):

* ``1 worker``: ``wirehub serve`` (memory broker).
* ``1 worker+redis``: ``wirehub serve --workers 1`` with a redis-server (the broker's cost).
* ``2 workers``: ``wirehub serve --workers 2`` and its private redis-server; the
  kernel spreads the subscribers (and the publisher) over both workers.

Printed per scenario: deliveries/s over the publish-to-last-delivery span,
latency p50/p99, the supervisor tree's CPU seconds per 1000 deliveries, and the
ratio to ``1 worker`` within the same repetition; medians over the repetitions
(docs/benchmarks.md, "Workers").
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import (  # the cluster bench's process helpers
    DRAINS,
    PYTHON,
    event,
    free_port,
    loadgen,
    read_until,
    start_redis,
    stop,
    tell,
)

__all__ = ["main"]

SCENARIOS = ("1 worker", "1 worker+redis", "2 workers")


async def start_hub(workers: int, redis_url: str | None) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "WIREHUB_STATS_INTERVAL": "0",
        "WIREHUB_HEARTBEAT__INTERVAL": "0",
        "WIREHUB_LIMITS__QUEUE_MAX_MESSAGES": "100000",
        "WIREHUB_LIMITS__QUEUE_MAX_BYTES": str(256 * 1024 * 1024),
        "WIREHUB_LIMITS__MAX_CONNECTIONS_PER_IP": "0",
        "WIREHUB_LIMITS__RATE": "0",
        "WIREHUB_ROOMS": '[{"pattern": "bench", "presence_events": false}]',
    }
    if redis_url:
        env |= {"WIREHUB_REDIS_URL": redis_url, "WIREHUB_REDIS__PREFIX": f"b{time.time_ns()}"}
    args = ["-m", "wirehub", "serve", "--port", str(port)]
    if workers > 1 or redis_url:
        args += ["--workers", str(workers)]
    proc = await asyncio.create_subprocess_exec(
        PYTHON, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    assert proc.stdout is not None
    # `wirehub serve` logs it once listening; the supervisor once every worker is.
    await read_until(proc.stdout, "Uvicorn running on", 60)
    DRAINS.add(asyncio.ensure_future(proc.stdout.read()))
    return proc, port


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the workers, Redis)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    except psutil.Error:
        pass
    return total


async def run_scenario(
    name: str, redis_port: int, subscribers: int, messages: int, window: int, tmp: Path
) -> dict[str, float]:
    workers = 2 if name == "2 workers" else 1
    redis_url = f"redis://127.0.0.1:{redis_port}/0" if name == "1 worker+redis" else None
    hub, port = await start_hub(workers, redis_url)
    subs: list[asyncio.subprocess.Process] = []
    pub: asyncio.subprocess.Process | None = None
    try:
        outs = [tmp / f"{name.replace(' ', '_')}-{i}.lat" for i in range(2)]
        share = [subscribers // 2 + subscribers % 2, subscribers // 2]
        for i in range(2):
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
            *("--port", str(port), "--prefix", "p-", "--count", str(messages)),
            *("--window", str(window)),
        )
        await event(pub, "ready", 30)
        cpu_before = tree_cpu(hub.pid)
        tell(pub, "go")
        published = await event(pub, "result", 300)
        for proc in subs:
            with contextlib.suppress(TimeoutError):
                await event(proc, "done", 30)
        cpu = tree_cpu(hub.pid) - cpu_before
        for proc in subs:
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
            "cpu_ms_per_1k": cpu * 1000 / max(received, 1) * 1000,
            "lost": expected - received,
        }
    finally:
        for proc in [*subs, *([pub] if pub else [])]:
            with contextlib.suppress(Exception):
                proc.kill()
                await proc.wait()
        await stop(hub)


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
                    if name == SCENARIOS[0]:
                        figures["ratio"] = 1.0
                    else:  # against this repetition's single process
                        base = rows[SCENARIOS[0]][-1]["deliveries_per_s"]
                        figures["ratio"] = figures["deliveries_per_s"] / base
                    rows[name].append(figures)
                    print(
                        f"rep {rep + 1} {name:15s} {figures['deliveries_per_s']:>10,.0f} del/s "
                        f"p50 {figures['p50_ms']:6.1f} ms p99 {figures['p99_ms']:7.1f} ms "
                        f"cpu {figures['cpu_ms_per_1k']:5.1f} ms/1k lost {figures['lost']:.0f}",
                        flush=True,
                    )
    finally:
        await stop(redis)
    print()
    print(
        f"{args.subscribers} subscribers, {args.messages} messages, window {args.window}, "
        f"median of {args.repeat}, {os.cpu_count()} cores"
    )
    print(
        f"{'scenario':15s} {'deliveries/s':>13s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'cpu ms/1k':>10s} {'vs 1 worker':>12s}"
    )
    for name in SCENARIOS:

        def med(key: str, name: str = name) -> float:
            return statistics.median(r[key] for r in rows[name])

        print(
            f"{name:15s} {med('deliveries_per_s'):>13,.0f} {med('p50_ms'):>8.1f} "
            f"{med('p99_ms'):>8.1f} {med('cpu_ms_per_1k'):>10.1f} {med('ratio'):>11.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    parser.add_argument("--subscribers", type=int, default=400)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=20, help="unacknowledged publishes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.subscribers, args.messages = 1, 200, 500
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()

"""The measured phases of bench/fanout.py: one fan-out run, one idle run, one probe.

A phase starts its load-generator processes (bench/loadgen.py), waits for every
subscriber to be ready, reads the CPU time of every server node and every
load-generator process, lets the publisher go, and reads them again when the last
subscriber has everything (or a grace period ran out). Every figure of a phase
comes from that one window: server CPU µs per delivery (user and system apart),
each load-generator process's CPU seconds per wall second, and the latencies the
subscribers recorded on the publisher's clock.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout_procs import Pinning, Redis, Server, SpySession, Worker

__all__ = [
    "Bench",
    "batch_advertised",
    "fanout_phase",
    "idle_phase",
    "raise_fd_limit",
    "split",
]

#: The loop-lag histogram's buckets the report reads (their ``le`` labels).
LAG_BUCKETS = ("0.01", "0.05", "0.1", "+Inf")


@dataclass
class Bench:
    """What every phase needs: where to write, how to pin, which client, what to profile."""

    workdir: Path
    pinning: Pinning
    client: str
    profile_dir: Path | None = None
    spy_dir: Path | None = None
    #: server kind -> phase key -> py-spy files, and that phase's CPU µs/delivery.
    spy_files: dict[str, dict[str, list[Path]]] = field(default_factory=dict)

    def loadgen(self, role: str, port: int, *args: str, batch: bool = False) -> Worker:
        argv = [role, "--port", str(port), "--client", self.client, *args]
        return Worker([*argv, "--batch"] if batch else argv, self.pinning)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(sorted_values: array.array[float] | list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def worst_stalls(
    traces: list[tuple[array.array[float], array.array[float]]],
    started: float,
    *,
    bin_s: float = 0.05,
    top: int = 3,
) -> list[dict[str, Any]]:
    """The worst latencies by when the message was published, and how many processes saw them.

    A stall every load-generator process sees at once is the server's (or the
    machine's); one only a single process sees is that process's own.
    """
    worst: dict[int, list[float]] = {}
    for i, (lat, sent) in enumerate(traces):
        for latency, at in zip(lat, sent, strict=True):
            row = worst.setdefault(int((at - started) / bin_s), [0.0] * len(traces))
            if latency > row[i]:
                row[i] = latency
    ranked = sorted(worst.items(), key=lambda item: max(item[1]), reverse=True)[:top]
    return [
        {
            "at_s": round(b * bin_s, 2),
            "max_ms": round(max(row) * 1e3, 1),
            "per_proc_ms": [round(v * 1e3, 1) for v in row],
        }
        for b, row in ranked
    ]


# -- phases -------------------------------------------------------------------------


async def fanout_phase(
    bench: Bench,
    nodes: list[Server],
    *,
    kind: str,
    key: str,
    tag: str,
    subscribers: int,
    messages: int,
    procs: int,
    window: int = 0,
    rate: float = 0.0,
    size: int = 0,
    paused: int = 0,
    grace: float = 5.0,
    redis: Redis | None = None,
) -> dict[str, Any]:
    """Subscribers join (split over ``nodes``), one publisher on the first node publishes."""
    batch = kind == "wirehub-batched"
    subs: list[Worker] = []
    outs: list[Path] = []
    procs = max(procs, len(nodes))
    # Spread the paused subscribers over the first processes, one each.
    paused_split = [1 if i < paused else 0 for i in range(procs)]
    paused_split[0] += max(0, paused - procs)
    for i, count in enumerate(split(subscribers, procs)):
        out = bench.workdir / f"lat-{tag}-{i}.f64"
        outs.append(out)
        node = nodes[i % len(nodes)]
        subs.append(
            bench.loadgen(
                "sub",
                node.port,
                *("--prefix", f"{tag}-s{i}", "--clients", str(count)),
                *("--expect", str(messages), "--out", str(out)),
                *("--paused", str(paused_split[i] if i < len(paused_split) else 0)),
                batch=batch,
            )
        )
    pub_args = ["--prefix", f"{tag}-p", "--count", str(messages), "--size", str(size)]
    pub_args += ["--window", str(window)] if window else ["--rate", str(rate)]
    pub = bench.loadgen("pub", nodes[0].port, *pub_args, batch=batch)
    workers = [*subs, pub]
    rss_series: list[tuple[float, int]] = []
    spy: SpySession | None = None
    try:
        for worker in subs:
            await worker.start()
        for worker in subs:
            await worker.expect("ready", 120)
        await pub.start()
        await pub.expect("ready", 30)
        await asyncio.sleep(0.5)  # let presence fan-out from the joins settle
        if bench.spy_dir is not None:
            out = bench.spy_dir / f"{tag}-{kind}.txt"
            spy = SpySession(nodes[0], out, bench.pinning)
            await spy.start()
            bench.spy_files.setdefault(kind, {}).setdefault(key, []).append(out)
        metrics0 = await nodes[0].hub_metrics()
        cpu0 = [node.cpu() for node in nodes]
        wcpu0 = [w.cpu() for w in workers]
        redis0 = redis.cpu() if redis else (0.0, 0.0)
        rss0 = nodes[0].rss()
        t0 = time.monotonic()

        async def sample_rss() -> None:
            while True:
                rss_series.append((round(time.monotonic() - t0, 2), nodes[0].rss()))
                await asyncio.sleep(0.25)

        sampler = asyncio.ensure_future(sample_rss())
        pub.tell("go")
        expected_seconds = messages / rate if rate else 120.0
        pub_result = await pub.expect("result", expected_seconds + 60)
        # Wait for every reading subscriber to have everything, or for the grace.
        dones = [asyncio.ensure_future(w.expect("done", grace)) for w in subs]
        await asyncio.wait(dones, timeout=grace)
        for task in dones:
            task.cancel()
        cpu1 = [node.cpu() for node in nodes]
        metrics1 = await nodes[0].hub_metrics()
        wcpu1 = [w.cpu() for w in workers]
        redis1 = redis.cpu() if redis else (0.0, 0.0)
        wall = time.monotonic() - t0
        sampler.cancel()
        if spy is not None:
            await spy.stop()
        rss_series.append((round(time.monotonic() - t0, 2), nodes[0].rss()))
        for worker in subs:
            worker.tell("stop")
        results = [await worker.expect("result", 30) for worker in subs]
    finally:
        if spy is not None:
            await spy.stop()
        for worker in workers:
            await worker.close()
    latencies = array.array("d")
    traces: list[tuple[array.array[float], array.array[float]]] = []
    for out in outs:
        with contextlib.suppress(OSError), out.open("rb") as f:
            chunk = array.array("d")
            chunk.frombytes(f.read())
            half = len(chunk) // 2
            latencies.extend(chunk[:half])
            traces.append((chunk[:half], chunk[half:]))
            out.unlink()
    ordered = sorted(latencies)
    received = sum(r["received"] for r in results)
    expected = sum(r["expected"] for r in results)
    last = max((r["last"] for r in results if r["last"]), default=pub_result["ended"])
    elapsed = max(1e-9, last - pub_result["started"])
    paused_info = [p for r in results for p in r["paused"]]
    node_user = [b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True)]
    node_sys = [b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True)]
    server_cpu = sum(node_user) + sum(node_sys)
    utils = [sum(b) - sum(a) for a, b in zip(wcpu0, wcpu1, strict=True)]
    utils = [u / wall for u in utils]
    sub_user = sum(b[0] - a[0] for a, b in zip(wcpu0[: len(subs)], wcpu1, strict=False))
    sub_sys = sum(b[1] - a[1] for a, b in zip(wcpu0[: len(subs)], wcpu1, strict=False))
    loadgen_cores = len(bench.pinning.loadgen or ()) or os.cpu_count() or 1
    offered = subscribers * rate if rate else None
    per = 1e6 / received if received else 0.0
    result = {
        "subscribers": subscribers,
        "messages": messages,
        "nodes": len(nodes),
        "published": pub_result["sent"],
        "acked": pub_result["acked"],
        "received": received,
        "expected": expected,
        "loss": 1 - received / expected if expected else 0.0,
        "deliveries_per_s": received / elapsed,
        "cpu_us_per_delivery": server_cpu * per if received else None,
        "server_user_us_per_delivery": sum(node_user) * per,
        "server_sys_us_per_delivery": sum(node_sys) * per,
        "server_cpu_s": server_cpu,
        "node_cpu_s": [u + s for u, s in zip(node_user, node_sys, strict=True)],
        "p50_ms": (percentile(ordered, 0.50) or 0) * 1e3,
        "p99_ms": (percentile(ordered, 0.99) or 0) * 1e3,
        "max_ms": (ordered[-1] if ordered else 0) * 1e3,
        "rss_start_mib": rss0 / 2**20,
        "rss_growth_mib": (max(r for _, r in rss_series) - rss0) / 2**20 if rss_series else 0,
        "rss_series_mib": [(t, round(r / 2**20, 1)) for t, r in rss_series],
        "paused": paused_info,
        "paused_closed": sum(1 for p in paused_info if p["closed"]),
        "reading_lost_connections": sum(r["lost_connections"] for r in results),
        # Load generator: CPU seconds / wall seconds per process over the measured window.
        "loadgen_util_pct": [round(u * 100, 1) for u in utils],
        "loadgen_max_util_pct": max(utils) * 100,
        "loadgen_core_util_pct": sum(utils) / loadgen_cores * 100,
        "loadgen_cpu_us_per_delivery": (sub_user + sub_sys) * per if received else None,
        "loadgen_user_us_per_delivery": sub_user * per,
        "loadgen_sys_us_per_delivery": sub_sys * per,
        "wall_s": wall,
        "published_at": pub_result["started"],
        "stalls": worst_stalls(traces, pub_result["started"]),
    }
    if metrics1:
        # The hub's own loop-lag samples (one per 100 ms) over the window: a stall
        # the clients saw that is not here happened outside the hub's Python.
        lag = 'wirehub_loop_lag_seconds_bucket{le="%s"}'
        late = {le: metrics1[lag % le] - metrics0.get(lag % le, 0.0) for le in LAG_BUCKETS}
        total = late["+Inf"]
        result["loop_lag_samples"] = int(total)
        result["loop_lag_over_ms"] = {
            ms: int(total - late[le]) for ms, le in (("10", "0.01"), ("50", "0.05"), ("100", "0.1"))
        }
        # Full garbage collections in the window (each stops the loop): how many, how long.
        gc2 = 'wirehub_gc_pause_seconds_%s{generation="2"}'
        if gc2 % "count" in metrics1:
            result["gc_full"] = int(metrics1[gc2 % "count"] - metrics0.get(gc2 % "count", 0.0))
            spent = metrics1[gc2 % "sum"] - metrics0.get(gc2 % "sum", 0.0)
            result["gc_full_ms"] = round(spent * 1000, 1)
    if offered and not size:
        result["offered_per_s"] = offered
        result["kept_up"] = received >= expected and received / elapsed >= 0.95 * offered
    if redis is not None:
        result["redis_cpu_us_per_delivery"] = (sum(redis1) - sum(redis0)) * per
    return result


async def idle_phase(bench: Bench, server: Server, *, clients: int, procs: int, tag: str) -> Any:
    # Warm the server up (imports, first allocations) before the baseline RSS.
    warm = bench.loadgen("idle", server.port, "--prefix", f"{tag}-w", "--clients", "10")
    await warm.start()
    await warm.expect("ready", 30)
    warm.tell("stop")
    await warm.expect("result", 30)
    await warm.close()
    await asyncio.sleep(1.0)
    rss0 = server.rss()
    workers = [
        bench.loadgen("idle", server.port, "--prefix", f"{tag}-i{i}", "--clients", str(n))
        for i, n in enumerate(split(clients, procs))
    ]
    try:
        started = time.monotonic()
        for worker in workers:
            await worker.start()
        for worker in workers:
            await worker.expect("ready", 180)
        connect_s = time.monotonic() - started
        await asyncio.sleep(1.0)
        rss1 = server.rss()
        for worker in workers:
            worker.tell("stop")
        opened = sum([(await w.expect("result", 30))["open"] for w in workers])
    finally:
        for worker in workers:
            await worker.close()
    return {
        "clients": clients,
        "open": opened,
        "connect_s": connect_s,
        "rss_base_mib": rss0 / 2**20,
        "rss_mib": rss1 / 2**20,
        "kib_per_connection": (rss1 - rss0) / clients / 1024,
    }


async def batch_advertised(bench: Bench, server: Server) -> bool:
    """Does the server's ``welcome`` to a ``?batch=1`` client say ``"batch": true``?"""
    probe = bench.loadgen("probe", server.port, "--prefix", "probe", batch=True)
    try:
        await probe.start()
        welcome = (await probe.expect("probe", 30))["welcome"] or {}
    finally:
        await probe.close()
    return welcome.get("batch") is True

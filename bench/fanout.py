"""WebSocket fan-out: wirehub against naive FastAPI, raw websockets and raw picows, in one run.

Run from the repository root (``make bench`` installs the ``bench`` extra first)::

    .venv/bin/python bench/fanout.py            # 3 repetitions, ~16 minutes
    .venv/bin/python bench/fanout.py --quick    # 1 repetition, smaller counts, ~3 minutes

Each server runs as its own subprocess on a free 127.0.0.1 port; the load comes
from bench/loadgen.py subprocesses (several subscriber processes, one
publisher; picows client by default, ``--client raw`` for the pure-Python one).
Servers are pinned to the first core and everything else to the others
(``--no-pin`` to turn it off). Server CPU time (user + system, psutil on the
server pid) is read around each measured phase, so **server CPU µs per
delivery**, the headline figure, holds even when the machine is shared; each
load-generator process's CPU over the same window says whether the clients, not
the server, were the limit. RSS is sampled every 0.25 s.

Servers (``--servers``): ``wirehub``; ``wirehub-batched`` (the same server with
clients on ``/ws?batch=1``, run only if its ``welcome`` says ``"batch": true``);
``naive`` (bench/baselines/naive_fastapi.py); ``raw`` (websockets.broadcast);
``picows`` (bench/baselines/raw_picows.py, the near-limit reference every ratio
is taken against).

Scenarios (``--scenarios``; docs/benchmarks.md has the figures):

1. throughput: N subscribers x M messages, published with a window of
   unacknowledged publishes: deliveries/s, server CPU µs/delivery, latency.
2. fixed rate: 500 subscribers at 200 and at 100 messages/s: latency p50/p99,
   deliveries/s achieved against offered (did the server keep up?).
3. slow consumers: 200 subscribers of which 2 stop reading, 16 KiB messages at
   50/s for 15 s, and the same run with nobody paused: the reading subscribers'
   loss and p99, server RSS growth, whether the paused ones were closed.
4. idle: 5 000 joined connections: server RSS per connection.
x. cross-node (wirehub only), 100 subscribers x 10 000 messages (window 64): one
   node alone, one node with a private redis-server, then nodes A and B with the
   publisher on A and the subscribers split over both: server CPU per delivery
   summed over the nodes, against the one node alone in the same repetition. Five
   times scenario 1's messages: at well under 1 µs per delivery, 200 000
   deliveries are ~0.1 s of CPU, which the 10 ms ticks CPU time is counted in
   cannot tell apart from 0.15. Then the same three at 2000 messages/s for 5 s
   (200 000 deliveries/s, below every run's saturation).

Figures are medians over the repetitions; ratios are taken within each
repetition (same machine state) and their median is shown. ``--profile DIR``
runs every server under cProfile, ``--py-spy DIR`` samples each throughput
phase with py-spy; either prints wirehub's top 15 functions at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from fanout_phases import Bench, batch_advertised, fanout_phase, idle_phase, raise_fd_limit
from fanout_procs import Pinning, Redis, Server
from fanout_profile import cprofile_top, pyspy_top
from fanout_report import LABELS, report
from wirehub.settings import LimitsSettings

__all__ = ["main"]

SERVERS = ("wirehub", "wirehub-batched", "naive", "raw", "picows")
#: picows (the reference server and the default client) comes with the ``bench`` extra.
HAVE_PICOWS = importlib.util.find_spec("picows") is not None


@dataclass
class Sizes:
    reps: int
    throughput: list[tuple[int, int]]  # (subscribers, messages)
    window: int
    rate_subs: int
    rates: list[float]
    rate_seconds: float
    slow_subs: int
    slow_paused: int
    slow_size: int
    slow_rate: float
    slow_seconds: float
    idle: int
    procs: int
    cross: tuple[int, int]  # (subscribers, messages)
    cross_rate: float  # messages/s of the fixed-rate cross-node runs
    cross_seconds: float


FULL = Sizes(
    reps=3,
    throughput=[(100, 2000), (1000, 200)],
    window=64,
    rate_subs=500,
    rates=[200, 100],
    rate_seconds=4,
    slow_subs=200,
    slow_paused=2,
    slow_size=16 * 1024,
    slow_rate=50,
    slow_seconds=15,
    idle=5000,
    procs=3,
    cross=(100, 10_000),
    cross_rate=2000,
    cross_seconds=5,
)
QUICK = Sizes(
    reps=1,
    throughput=[(100, 500), (1000, 50)],
    window=64,
    rate_subs=500,
    rates=[200, 100],
    rate_seconds=2,
    slow_subs=200,
    slow_paused=2,
    slow_size=16 * 1024,
    slow_rate=50,
    slow_seconds=5,
    idle=1000,
    procs=3,
    cross=(100, 500),
    cross_rate=2000,
    cross_seconds=2,
)


# -- the run ------------------------------------------------------------------------


async def with_servers(
    bench: Bench, kind: str, body: Any, count: int = 1, redis: Redis | None = None, **limits: int
) -> Any:
    prefix = f"bench{time.monotonic_ns()}"
    servers = [
        Server(
            kind,
            bench.workdir,
            bench.pinning,
            redis_url=redis.url if redis else None,
            redis_prefix=prefix,
            profile_dir=bench.profile_dir,
            **limits,
        )
        for _ in range(count)
    ]
    try:
        for server in servers:
            await server.start()
        return await body(*servers)
    finally:
        for server in servers:
            await server.stop()


async def run(
    bench: Bench,
    sizes: Sizes,
    servers: list[str],
    scenarios: set[str],
    slow_queue_bytes: int | None = None,
) -> dict[str, Any]:
    runs: list[dict[str, dict[str, Any]]] = []
    big_queue = {"queue_max_messages": 100_000, "queue_max_bytes": 256 * 2**20}
    hub = LimitsSettings()  # the hub's own defaults, whatever they are today
    default_queue = {
        "queue_max_messages": hub.queue_max_messages,
        "queue_max_bytes": hub.queue_max_bytes,
    }
    slow_queue = {
        "queue_max_messages": hub.queue_max_messages,
        "queue_max_bytes": slow_queue_bytes or hub.queue_max_bytes,
    }
    redis: Redis | None = None
    if "x" in scenarios and "wirehub" in servers:
        redis = Redis(bench.pinning)
        await redis.start()
    try:
        for rep in range(sizes.reps):
            runs.append(
                await one_rep(
                    bench,
                    sizes,
                    servers,
                    scenarios,
                    rep,
                    big_queue,
                    default_queue,
                    slow_queue,
                    redis,
                )
            )
    finally:
        if redis is not None:
            await redis.stop()
    return {"runs": runs}


async def one_rep(
    bench: Bench,
    sizes: Sizes,
    servers: list[str],
    scenarios: set[str],
    rep: int,
    big_queue: dict[str, int],
    default_queue: dict[str, int],
    slow_queue: dict[str, int],
    redis: Redis | None,
) -> dict[str, dict[str, Any]]:
    # Rotate the order each repetition so no server always runs first.
    order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
    results: dict[str, dict[str, Any]] = {kind: {} for kind in servers}

    def log(msg: str) -> None:
        print(f"[rep {rep + 1}/{sizes.reps} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    for kind in order if scenarios & {"1", "2"} else ():

        async def speed(server: Server, kind: str = kind) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if kind == "wirehub-batched" and not await batch_advertised(bench, server):
                out["skipped"] = "the server's welcome does not advertise batch: true"
                log(f"{kind}: skipped, {out['skipped']}")
                return out
            for subs, msgs in sizes.throughput if "1" in scenarios else ():
                key = f"s1_{subs}x{msgs}"
                out[key] = await fanout_phase(
                    bench,
                    [server],
                    kind=kind,
                    key=key,
                    tag=f"r{rep}{kind}{key}",
                    subscribers=subs,
                    messages=msgs,
                    procs=sizes.procs,
                    window=sizes.window,
                    grace=30,
                )
                log(f"{kind} {key}: {brief(out[key])}")
                await asyncio.sleep(1.0)
            for rate in sizes.rates if "2" in scenarios else ():
                key = f"s2_{rate:g}"
                out[key] = await fanout_phase(
                    bench,
                    [server],
                    kind=kind,
                    key=key,
                    tag=f"r{rep}{kind}{key}",
                    subscribers=sizes.rate_subs,
                    messages=int(rate * sizes.rate_seconds),
                    procs=sizes.procs,
                    rate=rate,
                    grace=5,
                )
                log(f"{kind} {key}: {brief(out[key])}")
            return out

        try:
            results[kind].update(await with_servers(bench, kind, speed, **big_queue))
        except Exception as exc:
            log(f"{kind} throughput FAILED: {exc!r}")

    plain = [k for k in order if k != "wirehub-batched"]
    for paused in (0, sizes.slow_paused) if "3" in scenarios else ():
        key = "s3_paused" if paused else "s3_nopause"
        for kind in plain:

            async def slow(server: Server, kind: str = kind, paused: int = paused) -> Any:
                result = await fanout_phase(
                    bench,
                    [server],
                    kind=kind,
                    key=f"s3_{paused}",
                    tag=f"r{rep}{kind}s3{paused}",
                    subscribers=sizes.slow_subs,
                    messages=int(sizes.slow_rate * sizes.slow_seconds),
                    procs=sizes.procs,
                    rate=sizes.slow_rate,
                    size=sizes.slow_size,
                    paused=paused,
                    grace=3,
                )
                result["slow_consumer_log_lines"] = server.log_count("slow consumer")
                result["slow_consumer_at_s"] = [
                    round(at - result["published_at"], 2)
                    for at in server.log_times("slow consumer")
                ]
                return result

            try:
                results[kind][key] = await with_servers(bench, kind, slow, **slow_queue)
                log(f"{kind} {key}: {brief(results[kind][key])}")
            except Exception as exc:
                log(f"{kind} {key} FAILED: {exc!r}")

    for kind in plain if "4" in scenarios else ():

        async def idle(server: Server, kind: str = kind) -> Any:
            return await idle_phase(
                bench, server, clients=sizes.idle, procs=sizes.procs, tag=f"r{rep}{kind}s4"
            )

        try:
            results[kind]["s4"] = await with_servers(bench, kind, idle, **default_queue)
            log(f"{kind} s4: {results[kind]['s4']['kib_per_connection']:.1f} KiB/conn")
        except Exception as exc:
            log(f"{kind} s4 FAILED: {exc!r}")

    if redis is not None:
        subs, msgs = sizes.cross
        # Each run as fast as acks come (window) and at a fixed rate below every
        # run's saturation: flat out, the one node alone falls furthest behind the
        # load generator, and a longer backlog coalesces more messages per write.
        phases = [
            (f"{prefix}{name}", count, via, rate)
            for prefix, rate in (("x_", 0.0), ("xr_", sizes.cross_rate))
            for name, count, via in (
                ("single", 1, None),
                ("single_redis", 1, redis),
                ("cross", 2, redis),
            )
        ]
        for key, count, via, rate in phases:

            async def cross(
                *nodes: Server, key: str = key, via: Redis | None = via, rate: float = rate
            ) -> Any:
                return await fanout_phase(
                    bench,
                    list(nodes),
                    kind="wirehub",
                    key=key,
                    tag=f"r{rep}{key}",
                    subscribers=subs,
                    messages=int(rate * sizes.cross_seconds) if rate else msgs,
                    procs=sizes.procs,
                    window=0 if rate else sizes.window,
                    rate=rate,
                    grace=30,
                    redis=via,
                )

            try:
                results["wirehub"][key] = await with_servers(
                    bench, "wirehub", cross, count, redis=via, **big_queue
                )
                log(f"wirehub {key}: {brief(results['wirehub'][key])}")
            except Exception as exc:
                log(f"wirehub {key} FAILED: {exc!r}")
    return results


def brief(r: dict[str, Any]) -> str:
    cpu = r["cpu_us_per_delivery"]
    if cpu is None:
        return f"{r['received']}/{r['expected']} delivered"
    text = (
        f"{r['received']}/{r['expected']} delivered, {r['deliveries_per_s']:.0f}/s, "
        f"cpu {cpu:.2f} us/deliv, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"rss +{r['rss_growth_mib']:.1f} MiB, loadgen {r['loadgen_util_pct']} % "
        f"({r['loadgen_cpu_us_per_delivery']:.2f} us/deliv)"
    )
    if "kept_up" in r:
        text += f", {'kept up' if r['kept_up'] else 'DID NOT keep up'}"
    if r["paused"]:
        text += f", paused closed {r['paused_closed']}/{len(r['paused'])}"
        text += f" {[p['close_code'] or p['error'] for p in r['paused']]}"
    if r.get("slow_consumer_at_s"):
        text += f" at {r['slow_consumer_at_s']} s"
    if "loop_lag_over_ms" in r:
        text += f", loop lag >10/50/100 ms {list(r['loop_lag_over_ms'].values())}"
    if "gc_full" in r:
        text += f", full GCs {r['gc_full']} ({r['gc_full_ms']} ms)"
    if r.get("stalls"):
        worst = r["stalls"][0]
        text += f", worst {worst['max_ms']} ms at {worst['at_s']} s {worst['per_proc_ms']}"
    return text


def add_derived(data: dict[str, Any]) -> None:
    for run_ in data["runs"]:
        for per_server in run_.values():
            for result in per_server.values():
                if isinstance(result, dict) and "loss" in result:
                    result["loss_pct"] = result["loss"] * 100


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average before the run "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def git_commit() -> str:
    with contextlib.suppress(Exception):
        import subprocess

        root = str(Path(__file__).resolve().parent.parent)
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    return "unknown"


def print_profiles(bench: Bench, data: dict[str, Any]) -> None:
    if bench.profile_dir is not None:
        for path in sorted(bench.profile_dir.glob("wirehub-*.prof")):
            print(f"\n{cprofile_top(path)}")
    for key, paths in bench.spy_files.get("wirehub", {}).items():
        found = [p for p in paths if p.exists()]
        cpus = [r["wirehub"].get(key, {}).get("cpu_us_per_delivery") for r in data["runs"]]
        cpu = statistics.median([c for c in cpus if c]) if any(cpus) else None
        print(f"\nwirehub {key}, {pyspy_top(found, cpu)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    default_servers = [s for s in SERVERS if HAVE_PICOWS or s != "picows"]
    parser.add_argument("--servers", default=",".join(default_servers), help="comma-separated")
    parser.add_argument("--scenarios", default="1,2,3,4,x", help="comma-separated: 1-4, x")
    parser.add_argument(
        "--client",
        choices=["picows", "raw"],
        default="picows" if HAVE_PICOWS else "raw",
        help="load-generator client: picows (C parser, the default when installed) or raw",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--slow-queue-kib",
        type=int,
        default=None,
        help="scenario 3: wirehub limits.queue_max_bytes in KiB (default: the hub's default)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", type=Path, help="run the servers under cProfile into DIR")
    parser.add_argument("--py-spy", type=Path, help="py-spy every measured phase into DIR")
    args = parser.parse_args()
    raise_fd_limit()
    sizes = QUICK if args.quick else FULL
    if args.reps:
        sizes.reps = args.reps
    servers = [s for s in args.servers.split(",") if s]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    pinning = Pinning(not args.no_pin)
    pinning.pin_self()
    print(f"machine: {machine()}", flush=True)
    print(f"commit: {git_commit()}; {pinning.describe()}", flush=True)
    print(f"load generator: {args.client} client, {sizes.procs} subscriber processes", flush=True)
    print(f"servers: {', '.join(LABELS[s] for s in servers)}", flush=True)
    if not HAVE_PICOWS:
        print("picows is not installed (pip install -e '.[bench]'): no reference server, no ratios")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wirehub-fanout-") as tmp:
        bench = Bench(Path(tmp), pinning, args.client)
        for name in ("profile", "py_spy"):
            where: Path | None = getattr(args, name)
            if where is not None:
                where.mkdir(parents=True, exist_ok=True)
                setattr(bench, "profile_dir" if name == "profile" else "spy_dir", where.resolve())
        scenarios = set(args.scenarios.split(","))
        slow_bytes = args.slow_queue_kib and args.slow_queue_kib * 1024
        data = asyncio.run(run(bench, sizes, servers, scenarios, slow_bytes))
    add_derived(data)
    data["sizes"] = sizes.__dict__
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    print(f"\ntotal time {time.monotonic() - started:.0f} s, medians of {sizes.reps} run(s)")
    print(f"{pinning.describe()}; load generator: {args.client} client\n")
    print(report(data, sizes, servers))
    print_profiles(bench, data)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

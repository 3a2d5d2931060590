"""WebSocket fan-out: wirehub against a naive FastAPI server and a raw ``websockets`` server.

Run from the repository root::

    .venv/bin/python bench/fanout.py            # 3 repetitions, ~10 minutes
    .venv/bin/python bench/fanout.py --quick    # 1 repetition, smaller counts, ~2 minutes

Each server runs as its own subprocess on a free 127.0.0.1 port; the load comes
from bench/loadgen.py subprocesses (several subscriber processes, one
publisher). Server CPU time (user + system, from psutil on the server pid) is
sampled around each measured phase, so "server CPU µs per delivery" holds even
when the machine is shared; RSS is sampled every 0.25 s.

Scenarios (docs/benchmarks.md, "WebSocket fan-out", has the figures):

1. throughput: N subscribers x M messages, published with a window of
   unacknowledged publishes: deliveries/s, server CPU µs/delivery, latency.
2. fixed rate: 500 subscribers, 100 messages/s: latency p50/p99.
3. slow consumers: 200 subscribers of which 2 stop reading, 16 KiB messages at
   50/s for 15 s, and the same run with nobody paused: the reading subscribers'
   loss and p99, server RSS growth, whether the paused ones were closed.
4. idle: 5 000 joined connections: server RSS per connection.

Figures are medians over the repetitions; ratios are taken within each
repetition (same machine state) and their median is shown.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from wirehub.settings import LimitsSettings

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
#: ``--profile DIR``: run every server under cProfile, one .prof file per server process.
PROFILE_DIR: Path | None = None
SERVERS = ("wirehub", "naive", "raw")
LABELS = {
    "wirehub": "wirehub",
    "naive": "naive FastAPI",
    "raw": "raw websockets",
}

WIREHUB_CONFIG = """
# bench/fanout.py: wirehub settings for the fan-out benchmark.
stats_interval = 0
demo = false

[server]
log_level = "warning"

[limits]
# Every load generator connects from 127.0.0.1: no per-address cap.
max_connections_per_ip = 0
# Publishers send as fast as the hub acks: no per-connection frame rate.
rate = 0
# Scenario 1 publishes as fast as acks come back; acks come once a message is
# queued, not delivered, so a subscriber's queue may hold the whole run.
queue_max_messages = {queue_max_messages}
queue_max_bytes = {queue_max_bytes}
"""


@dataclass
class Sizes:
    reps: int
    throughput: list[tuple[int, int]]  # (subscribers, messages)
    window: int
    rate_subs: int
    rate: float
    rate_seconds: float
    slow_subs: int
    slow_paused: int
    slow_size: int
    slow_rate: float
    slow_seconds: float
    idle: int
    procs: int


FULL = Sizes(
    reps=3,
    throughput=[(100, 2000), (1000, 200)],
    window=64,
    rate_subs=500,
    rate=100,
    rate_seconds=4,
    slow_subs=200,
    slow_paused=2,
    slow_size=16 * 1024,
    slow_rate=50,
    slow_seconds=15,
    idle=5000,
    procs=2,
)
QUICK = Sizes(
    reps=1,
    throughput=[(100, 500), (1000, 50)],
    window=64,
    rate_subs=500,
    rate=100,
    rate_seconds=2,
    slow_subs=200,
    slow_paused=2,
    slow_size=16 * 1024,
    slow_rate=50,
    slow_seconds=5,
    idle=1000,
    procs=2,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(sorted_values: array.array[float] | list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# -- servers ----------------------------------------------------------------------


class Server:
    """One server under test, as a subprocess with its log in ``workdir``."""

    def __init__(self, kind: str, workdir: Path, *, queue_max_messages: int, queue_max_bytes: int):
        self.kind = kind
        self.port = free_port()
        self.log_path = workdir / f"{kind}-{self.port}.log"
        if kind == "wirehub":
            config = workdir / f"wirehub-{self.port}.toml"
            config.write_text(
                WIREHUB_CONFIG.format(
                    queue_max_messages=queue_max_messages, queue_max_bytes=queue_max_bytes
                )
            )
            self.cmd = [PYTHON, "-m", "wirehub", "serve", "--config", str(config)]
            self.cmd += ["--port", str(self.port)]
        elif kind == "naive":
            self.cmd = [PYTHON, str(BENCH / "baselines" / "naive_fastapi.py"), "--port"]
            self.cmd.append(str(self.port))
        else:
            self.cmd = [PYTHON, str(BENCH / "baselines" / "raw_websockets.py"), "--port"]
            self.cmd.append(str(self.port))
        if PROFILE_DIR is not None:
            prof = PROFILE_DIR / f"{kind}-{self.port}.prof"
            self.cmd[1:1] = ["-m", "cProfile", "-o", str(prof)]
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    async def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL, cwd=ROOT
        )
        log.close()
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout}s")

    def cpu(self) -> float:
        times = self.ps.cpu_times()  # type: ignore[union-attr]
        return times.user + times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss  # type: ignore[union-attr]

    def log_count(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# -- load generator processes -------------------------------------------------------


class Worker:
    """A bench/loadgen.py subprocess speaking JSON lines."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON,
            str(BENCH / "loadgen.py"),
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        self._pump = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                await self.events.put(json.loads(line))
        await self.events.put({"event": "exit"})

    async def expect(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(
                self.events.get(), max(0.01, deadline - time.monotonic())
            )
            if event["event"] == name:
                return event
            if event["event"] == "exit":
                raise RuntimeError(f"loadgen {self.args[0]} exited before '{name}'")

    def tell(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(word.encode() + b"\n")

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 2)


def split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def fanout_phase(
    server: Server,
    workdir: Path,
    *,
    tag: str,
    subscribers: int,
    messages: int,
    procs: int,
    window: int = 0,
    rate: float = 0.0,
    size: int = 0,
    paused: int = 0,
    grace: float = 5.0,
) -> dict[str, Any]:
    """Subscribers join, one publisher publishes, subscribers time what they get."""
    subs: list[Worker] = []
    outs: list[Path] = []
    # Spread the paused subscribers over the first processes, one each.
    paused_split = [1 if i < paused else 0 for i in range(procs)]
    paused_split[0] += max(0, paused - procs)
    for i, count in enumerate(split(subscribers, procs)):
        out = workdir / f"lat-{tag}-{i}.f64"
        outs.append(out)
        subs.append(
            Worker(
                [
                    *("sub", "--port", str(server.port), "--prefix", f"{tag}-s{i}"),
                    *("--clients", str(count), "--expect", str(messages)),
                    *("--paused", str(paused_split[i] if i < len(paused_split) else 0)),
                    *("--out", str(out)),
                ]
            )
        )
    pub_args = ["pub", "--port", str(server.port), "--prefix", f"{tag}-p", "--count", str(messages)]
    pub_args += ["--size", str(size)]
    pub_args += ["--window", str(window)] if window else ["--rate", str(rate)]
    pub = Worker(pub_args)
    rss_series: list[tuple[float, int]] = []
    try:
        for worker in subs:
            await worker.start()
        for worker in subs:
            await worker.expect("ready", 120)
        await pub.start()
        await pub.expect("ready", 30)
        await asyncio.sleep(0.5)  # let presence fan-out from the joins settle
        cpu0 = server.cpu()
        rss0 = server.rss()
        t0 = time.monotonic()

        async def sample_rss() -> None:
            while True:
                rss_series.append((round(time.monotonic() - t0, 2), server.rss()))
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
        cpu1 = server.cpu()
        sampler.cancel()
        rss_series.append((round(time.monotonic() - t0, 2), server.rss()))
        for worker in subs:
            worker.tell("stop")
        results = [await worker.expect("result", 30) for worker in subs]
    finally:
        for worker in [*subs, pub]:
            await worker.close()
    latencies = array.array("d")
    for out in outs:
        with contextlib.suppress(OSError), out.open("rb") as f:
            data = f.read()
            chunk = array.array("d")
            chunk.frombytes(data)
            latencies.extend(chunk)
            out.unlink()
    ordered = sorted(latencies)
    received = sum(r["received"] for r in results)
    expected = sum(r["expected"] for r in results)
    last = max((r["last"] for r in results if r["last"]), default=pub_result["ended"])
    elapsed = max(1e-9, last - pub_result["started"])
    paused_info = [p for r in results for p in r["paused"]]
    return {
        "subscribers": subscribers,
        "messages": messages,
        "published": pub_result["sent"],
        "acked": pub_result["acked"],
        "received": received,
        "expected": expected,
        "loss": 1 - received / expected if expected else 0.0,
        "deliveries_per_s": received / elapsed,
        "cpu_us_per_delivery": (cpu1 - cpu0) * 1e6 / received if received else None,
        "server_cpu_s": cpu1 - cpu0,
        "p50_ms": (percentile(ordered, 0.50) or 0) * 1e3,
        "p99_ms": (percentile(ordered, 0.99) or 0) * 1e3,
        "max_ms": (ordered[-1] if ordered else 0) * 1e3,
        "rss_start_mib": rss0 / 2**20,
        "rss_growth_mib": (max(r for _, r in rss_series) - rss0) / 2**20 if rss_series else 0,
        "rss_series_mib": [(t, round(r / 2**20, 1)) for t, r in rss_series],
        "paused": paused_info,
        "paused_closed": sum(1 for p in paused_info if p["closed"]),
        "reading_lost_connections": sum(r["lost_connections"] for r in results),
    }


async def idle_phase(server: Server, *, clients: int, procs: int, tag: str) -> dict[str, Any]:
    """Open ``clients`` joined idle connections; RSS added per connection."""
    # Warm up: one connection through every code path, then measure the base.
    warm = Worker(["idle", "--port", str(server.port), "--prefix", f"{tag}-w", "--clients", "10"])
    await warm.start()
    await warm.expect("ready", 30)
    warm.tell("stop")
    await warm.expect("result", 30)
    await warm.close()
    await asyncio.sleep(1.0)
    rss0 = server.rss()
    workers = [
        Worker(["idle", "--port", str(server.port), "--prefix", f"{tag}-i{i}", "--clients", str(n)])
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


# -- the run ------------------------------------------------------------------------


async def with_server(
    kind: str, workdir: Path, body: Any, *, queue_max_messages: int, queue_max_bytes: int
) -> Any:
    server = Server(
        kind, workdir, queue_max_messages=queue_max_messages, queue_max_bytes=queue_max_bytes
    )
    await server.start()
    try:
        return await body(server)
    finally:
        await server.stop()


async def run(
    sizes: Sizes,
    servers: list[str],
    workdir: Path,
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
    for rep in range(sizes.reps):
        # Rotate the order each repetition so no server always runs first.
        order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
        results: dict[str, dict[str, Any]] = {kind: {} for kind in servers}

        async def log(msg: str, rep: int = rep) -> None:
            print(f"[rep {rep + 1}/{sizes.reps} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

        for kind in order if scenarios & {"1", "2"} else ():

            async def speed(server: Server, kind: str = kind, rep: int = rep) -> dict[str, Any]:
                out: dict[str, Any] = {}
                for subs, msgs in sizes.throughput if "1" in scenarios else ():
                    key = f"s1_{subs}x{msgs}"
                    out[key] = await fanout_phase(
                        server,
                        workdir,
                        tag=f"r{rep}{kind}{key}",
                        subscribers=subs,
                        messages=msgs,
                        procs=sizes.procs,
                        window=sizes.window,
                        grace=30,
                    )
                    await log(f"{kind} {key}: {brief(out[key])}")
                    await asyncio.sleep(1.0)
                if "2" not in scenarios:
                    return out
                count = int(sizes.rate * sizes.rate_seconds)
                out["s2"] = await fanout_phase(
                    server,
                    workdir,
                    tag=f"r{rep}{kind}s2",
                    subscribers=sizes.rate_subs,
                    messages=count,
                    procs=sizes.procs,
                    rate=sizes.rate,
                    grace=5,
                )
                await log(f"{kind} s2: {brief(out['s2'])}")
                return out

            try:
                results[kind].update(await with_server(kind, workdir, speed, **big_queue))
            except Exception as exc:
                await log(f"{kind} throughput FAILED: {exc!r}")

        for paused in (0, sizes.slow_paused) if "3" in scenarios else ():
            key = "s3_paused" if paused else "s3_nopause"
            for kind in order:

                async def slow(
                    server: Server, kind: str = kind, paused: int = paused, rep: int = rep
                ) -> Any:
                    result = await fanout_phase(
                        server,
                        workdir,
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
                    return result

                try:
                    results[kind][key] = await with_server(kind, workdir, slow, **slow_queue)
                    await log(f"{kind} {key}: {brief(results[kind][key])}")
                except Exception as exc:
                    await log(f"{kind} {key} FAILED: {exc!r}")

        for kind in order if "4" in scenarios else ():

            async def idle(server: Server, kind: str = kind, rep: int = rep) -> Any:
                return await idle_phase(
                    server, clients=sizes.idle, procs=sizes.procs, tag=f"r{rep}{kind}s4"
                )

            try:
                results[kind]["s4"] = await with_server(kind, workdir, idle, **default_queue)
                await log(f"{kind} s4: {results[kind]['s4']['kib_per_connection']:.1f} KiB/conn")
            except Exception as exc:
                await log(f"{kind} s4 FAILED: {exc!r}")
        runs.append(results)
    return {"runs": runs}


def brief(r: dict[str, Any]) -> str:
    cpu = r["cpu_us_per_delivery"]
    text = (
        f"{r['received']}/{r['expected']} delivered, {r['deliveries_per_s']:.0f}/s, "
        f"cpu {cpu:.1f} us/deliv, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"rss +{r['rss_growth_mib']:.1f} MiB"
        if cpu is not None
        else f"{r['received']}/{r['expected']} delivered"
    )
    if r["paused"]:
        text += f", paused closed {r['paused_closed']}/{len(r['paused'])}"
        text += f" {[p['close_code'] or p['error'] for p in r['paused']]}"
    return text


# -- report -----------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]], kind: str, key: str, field_: str) -> float | None:
    values = []
    for run_ in runs:
        value = run_.get(kind, {}).get(key, {}).get(field_)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values.append(float(value))
    return statistics.median(values) if values else None


def median_ratio(
    runs: list[dict[str, Any]], key: str, field_: str, other: str, kind: str = "wirehub"
) -> float | None:
    values = []
    for run_ in runs:
        mine = run_.get(kind, {}).get(key, {}).get(field_)
        theirs = run_.get(other, {}).get(key, {}).get(field_)
        if mine is not None and theirs:
            values.append(mine / theirs)
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(data: dict[str, Any], sizes: Sizes, servers: list[str]) -> str:
    runs = data["runs"]
    lines: list[str] = []
    header = "| scenario | metric | " + " | ".join(LABELS[s] for s in servers) + " |"
    lines += [header, "|---|---|" + "---|" * len(servers)]

    def row(scenario: str, metric: str, key: str, field_: str, spec: str = ".1f") -> None:
        cells = [fmt(median_of(runs, s, key, field_), spec) for s in servers]
        lines.append(f"| {scenario} | {metric} | " + " | ".join(cells) + " |")

    for subs, msgs in sizes.throughput:
        key = f"s1_{subs}x{msgs}"
        name = f"1. {subs} subs x {msgs} msgs"
        row(name, "deliveries/s", key, "deliveries_per_s", ".0f")
        row(name, "server CPU µs/delivery", key, "cpu_us_per_delivery", ".2f")
        row(name, "latency p50 ms", key, "p50_ms")
        row(name, "latency p99 ms", key, "p99_ms")
        row(name, "loss %", key, "loss_pct", ".2f")
    name = f"2. {sizes.rate_subs} subs @ {sizes.rate:g}/s"
    row(name, "latency p50 ms", "s2", "p50_ms", ".2f")
    row(name, "latency p99 ms", "s2", "p99_ms", ".2f")
    row(name, "server CPU µs/delivery", "s2", "cpu_us_per_delivery", ".2f")
    for key, label in (
        ("s3_nopause", "nobody paused"),
        ("s3_paused", f"{sizes.slow_paused} paused"),
    ):
        name = f"3. {sizes.slow_subs} subs, 16 KiB @ {sizes.slow_rate:g}/s, {label}"
        row(name, "reading subs' loss %", key, "loss_pct", ".2f")
        row(name, "reading subs' p50 ms", key, "p50_ms", ".2f")
        row(name, "reading subs' p99 ms", key, "p99_ms", ".2f")
        row(name, "server RSS growth MiB", key, "rss_growth_mib")
        if key == "s3_paused":
            row(name, "paused subs closed", key, "paused_closed", ".0f")
    row(f"4. {sizes.idle} idle connections", "server KiB/connection", "s4", "kib_per_connection")

    lines.append("")
    lines.append("| target (wirehub, same run) | ratio / value | met |")
    lines.append("|---|---|---|")

    def target(label: str, value: float | None, ok: bool | None, spec: str = ".2f") -> None:
        verdict = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {label} | {fmt(value, spec)} | {verdict} |")

    for subs, msgs in sizes.throughput:
        key = f"s1_{subs}x{msgs}"
        if "naive" in servers:
            r = median_ratio(runs, key, "deliveries_per_s", "naive")
            target(
                f"1. {subs}x{msgs} deliveries/s vs naive >= 1.0x",
                r,
                None if r is None else r >= 1.0,
            )
        if "raw" in servers:
            r = median_ratio(runs, key, "deliveries_per_s", "raw")
            target(
                f"1. {subs}x{msgs} deliveries/s vs raw >= 0.8x", r, None if r is None else r >= 0.8
            )
            r = median_ratio(runs, key, "cpu_us_per_delivery", "raw")
            target(f"1. {subs}x{msgs} CPU/delivery vs raw (info)", r, None)
    if "raw" in servers:
        r = median_ratio(runs, "s2", "p99_ms", "raw")
        target("2. p99 vs raw <= 1.0x", r, None if r is None else r <= 1.0)
    loss = median_of(runs, "wirehub", "s3_paused", "loss_pct")
    target("3. reading subs' loss with 2 paused (%) = 0", loss, None if loss is None else loss == 0)
    ratios = []
    for run_ in runs:
        a = run_.get("wirehub", {}).get("s3_paused", {}).get("p99_ms")
        b = run_.get("wirehub", {}).get("s3_nopause", {}).get("p99_ms")
        if a is not None and b:
            ratios.append(a / b)
    r = statistics.median(ratios) if ratios else None
    target("3. p99 paused / p99 nobody paused <= 2.0x", r, None if r is None else r <= 2.0)
    closed = median_of(runs, "wirehub", "s3_paused", "paused_closed")
    target(
        f"3. paused subs closed = {sizes.slow_paused}",
        closed,
        None if closed is None else closed == sizes.slow_paused,
        ".0f",
    )
    growth = median_of(runs, "wirehub", "s3_paused", "rss_growth_mib")
    target("3. RSS growth < 64 MiB", growth, None if growth is None else growth < 64, ".1f")
    if "naive" in servers:
        r = median_ratio(runs, "s4", "kib_per_connection", "naive")
        target("4. KiB/connection vs naive <= 1.0x", r, None if r is None else r <= 1.0)
    return "\n".join(lines)


def add_derived(data: dict[str, Any]) -> None:
    for run_ in data["runs"]:
        for per_server in run_.values():
            for result in per_server.values():
                if "loss" in result:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument("--scenarios", default="1,2,3,4", help="comma-separated subset of 1-4")
    parser.add_argument(
        "--slow-queue-kib",
        type=int,
        default=None,
        help="scenario 3: wirehub limits.queue_max_bytes in KiB (default: the hub's default)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", type=Path, help="run the servers under cProfile into DIR")
    args = parser.parse_args()
    raise_fd_limit()
    global PROFILE_DIR
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile.resolve()
    sizes = QUICK if args.quick else FULL
    if args.reps:
        sizes.reps = args.reps
    servers = [s for s in args.servers.split(",") if s]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    print(f"machine: {machine()}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wirehub-fanout-") as tmp:
        scenarios = set(args.scenarios.split(","))
        data = asyncio.run(
            run(
                sizes,
                servers,
                Path(tmp),
                scenarios,
                args.slow_queue_kib and args.slow_queue_kib * 1024,
            )
        )
    add_derived(data)
    data["sizes"] = sizes.__dict__
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    print(f"\ntotal time {time.monotonic() - started:.0f} s, medians of {sizes.reps} run(s)\n")
    print(report(data, sizes, servers))


if __name__ == "__main__":
    main()

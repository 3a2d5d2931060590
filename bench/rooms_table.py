"""Honest latency while one connection joins new rooms in a full room table (issue 11, item 5).

Run from the repository root::

    .venv/bin/python bench/rooms_table.py                # 100 000 rooms, 1 000 joins, 3 runs
    .venv/bin/python bench/rooms_table.py --rooms 20000 --runs 5

Starts ``wirehub serve`` (a subprocess on a free port) with ``limits.max_rooms =
--rooms`` and fills the table with idle rooms that each hold one message of
history (publishes from one connection, ``publish_requires_join = false``).
Then, ``--runs`` times, it measures an honest room's publish→deliver latency (a
publisher and a subscriber, one message per ms) without, then during as many
pings, then during ``--joins`` joins of new room names, each from another
connection in its own process, sent at 1 000/s (the default ``limits.rate``, as
fast as one connection may). The pings are the control: the same frame rate
with no room table behind it, which on a loaded machine moves p99 by itself.
It prints p50/p99 of each phase, the p99 ratios (the median over runs of joins
against without), the attacker's round trip, ``/healthz`` time, how many of the
hub's own loop-lag samples (every 0.1 s) were later than 10 ms, and how the
joins were answered.

A walk over the table per join (the bug) shows as seconds of honest latency and
refused joins; the fix keeps the ratio near 1 and every join answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

__all__ = ["main"]

PACE = 0.001  # honest publishes and attacker joins: one per ms


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1e3


async def _client(url: str, client_id: str) -> ClientConnection:
    ws = await connect(f"{url}?client_id={client_id}", max_size=2**24, max_queue=None)
    await ws.recv()  # welcome
    return ws


async def _request(ws: ClientConnection, frame: dict) -> dict:
    await ws.send(orjson.dumps(frame).decode())
    while True:
        reply = orjson.loads(await ws.recv())
        if reply.get("ref") == frame["ref"]:
            return reply


async def _fill(url: str, rooms: int) -> None:
    """``rooms`` rooms with one message each, pipelined with a window of acks."""
    ws = await _client(url, "filler")
    window, sent, acked = 256, 0, 0
    while acked < rooms:
        while sent < rooms and sent - acked < window:
            frame = {"type": "publish", "room": f"fill:{sent}", "data": sent, "ref": sent}
            await ws.send(orjson.dumps(frame).decode())
            sent += 1
        reply = orjson.loads(await ws.recv())
        if reply.get("type") != "ack":
            raise RuntimeError(f"fill refused: {reply}")
        acked += 1
    await ws.close()


async def _honest(pub: ClientConnection, seen: list[float], until: asyncio.Future) -> list[float]:
    """One publish per ms until ``until`` is done (and at least 300); the latencies seen."""
    start, sent = len(seen), 0
    while sent < 300 or not until.done():
        frame = {"type": "publish", "room": "honest", "data": time.perf_counter()}
        await pub.send(orjson.dumps(frame).decode())
        sent += 1
        await asyncio.sleep(PACE)
    deadline = time.monotonic() + 60
    while len(seen) < start + sent and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if len(seen) != start + sent:
        raise RuntimeError(f"{start + sent - len(seen)} honest messages lost")
    return seen[start:]


async def _attack(url: str, run: int, joins: int, kind: str) -> None:
    """The attacker process: connect, say ready, and on a line from stdin send ``joins``
    joins of new names (``kind`` join) or as many pings (the same rate, no room table)."""
    ws = await _client(url, f"hostile-{kind}{run}")
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    rtts: list[float] = []
    answers: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(joins):
        t0 = time.perf_counter()
        room = f"attack:{run}:{i}"
        frame = (
            {"type": "join", "room": room, "ref": i}
            if kind == "join"
            else {"type": "ping", "ref": i}
        )
        reply = await _request(ws, frame)
        rtts.append(time.perf_counter() - t0)
        answers[reply["type"] if reply["type"] != "error" else reply["code"]] += 1
        ahead = started + (i + 1) * PACE - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    took = time.perf_counter() - started
    print(orjson.dumps({"took": took, "rtt_p99": _pct(rtts, 99), "answers": answers}).decode())
    await ws.close()


async def _health(http: httpx.AsyncClient, until: asyncio.Future) -> float:
    """Worst /healthz time, asked every 50 ms until ``until`` is done."""
    worst = 0.0
    while not until.done():
        t0 = time.perf_counter()
        await http.get("/healthz")
        worst = max(worst, time.perf_counter() - t0)
        await asyncio.sleep(0.05)
    return worst * 1e3


async def _stalls(http: httpx.AsyncClient) -> tuple[float, float]:
    """The hub's own loop-lag histogram: (samples so far, samples later than 10 ms)."""
    text = (await http.get("/metrics")).text
    pattern = r'^wirehub_loop_lag_seconds_(count|bucket\{le="0.01"\}) (\S+)$'
    found = dict(re.findall(pattern, text, re.M))
    total = float(found.get("count", 0))
    return total, total - float(found.get('bucket{le="0.01"}', 0))


async def _bench(http_url: str, ws_url: str, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    await _fill(ws_url, args.rooms - 1)
    print(f"filled {args.rooms - 1} rooms in {time.perf_counter() - t0:.1f}s")
    sub, pub = await _client(ws_url, "sub"), await _client(ws_url, "pub")
    for ws in (sub, pub):
        await _request(ws, {"type": "join", "room": "honest", "ref": "j"})
    seen: list[float] = []

    async def read() -> None:
        async for raw in sub:
            frame = orjson.loads(raw)
            if frame.get("type") == "message":
                seen.append(time.perf_counter() - frame["data"])

    reader = asyncio.create_task(read())

    async def phase(http: httpx.AsyncClient, run: int, kind: str) -> dict:
        """Honest latencies while nothing else happens, or while an attacker sends ``kind``."""
        if kind == "none":
            until: asyncio.Future = asyncio.ensure_future(asyncio.sleep(0.3))
            attacker = None
        else:
            attacker = await asyncio.create_subprocess_exec(
                *(sys.executable, __file__, "--attack", ws_url, "--run", str(run)),
                *("--joins", str(args.joins), "--kind", kind),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert attacker.stdin is not None and attacker.stdout is not None
            if (await attacker.stdout.readline()).strip() != b"ready":
                raise RuntimeError("attacker did not start")
            attacker.stdin.write(b"go\n")
            until = asyncio.ensure_future(attacker.stdout.readline())
        lag = await _stalls(http)
        health = asyncio.ensure_future(_health(http, until))
        latencies = await _honest(pub, seen, until)
        after = await _stalls(http)
        result = {
            "p50": _pct(latencies, 50),
            "p99": _pct(latencies, 99),
            "healthz": await health,
            "stalls": f"{after[1] - lag[1]:.0f}/{after[0] - lag[0]:.0f}",
        }
        if attacker is not None:
            result.update(orjson.loads(await until))
            await attacker.wait()
        return result

    ratios: list[float] = []
    async with httpx.AsyncClient(base_url=http_url) as http:
        await http.get("/healthz")  # the connection is open before anything is timed
        for run in range(args.runs):
            print(f"run {run}:")
            phases = {kind: await phase(http, run, kind) for kind in ("none", "ping", "join")}
            for kind, label in (("none", "without"), ("ping", "pings"), ("join", "joins")):
                r = phases[kind]
                extra = ""
                if kind != "none":
                    extra = (
                        f"; {args.joins} {kind}s in {r['took']:.2f}s, round trip p99"
                        f" {r['rtt_p99']:.2f} ms, answers {r['answers']}"
                    )
                print(
                    f"  {label:8} honest p50/p99 {r['p50']:.2f}/{r['p99']:.2f} ms;"
                    f" /healthz max {r['healthz']:.1f} ms;"
                    f" hub loop-lag samples > 10 ms {r['stalls']}{extra}"
                )
            ratios.append(phases["join"]["p99"] / phases["none"]["p99"])
            reference = max(phases["none"]["p99"], phases["ping"]["p99"])
            print(
                f"  p99 ratio joins/without x{ratios[-1]:.2f},"
                f" joins/max(without, pings) x{phases['join']['p99'] / reference:.2f}"
            )
    reader.cancel()
    median = statistics.median(ratios)
    print(f"median p99 ratio (joins / without) over {args.runs} runs: {median:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=100_000, help="limits.max_rooms (filled)")
    parser.add_argument("--joins", type=int, default=1000, help="joins of new names per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attack", metavar="WS_URL", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="join", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        asyncio.run(_attack(args.attack, args.run, args.joins, args.kind))
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "hub.toml"
        config.write_text(
            "stats_interval = 0\n[limits]\n"
            f"max_rooms = {args.rooms}\nmax_rooms_per_connection = {args.joins}\n"
            "publish_requires_join = false\nrate = 0\n"
        )
        log = open(Path(tmp) / "hub.log", "wb")  # noqa: SIM115 - closed below
        cmd = [
            sys.executable,
            "-m",
            "wirehub",
            "serve",
            "--port",
            str(port),
            "--config",
            str(config),
        ]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            deadline = time.monotonic() + 30
            while True:  # ready once /healthz answers
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"hub did not start:\n{(Path(tmp) / 'hub.log').read_text()}")
                time.sleep(0.1)
            asyncio.run(_bench(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", args))
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


if __name__ == "__main__":
    main()

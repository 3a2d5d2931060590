"""A deploy without a reconnect storm: 2 000 clients, one node restarted, nothing lost.

Run from the repository root (needs ``redis-server`` on PATH)::

    .venv/bin/python bench/reconnect_storm.py                    # 2000 clients, window [1, 5] s
    .venv/bin/python bench/reconnect_storm.py --window 0,0       # no window: the storm
    .venv/bin/python bench/reconnect_storm.py --clients 500 --quick

What happens (every process real, every wait bounded):

1. a private ``redis-server``; hub nodes **A** and **B** (``wirehub serve``) share it;
2. ``--clients`` Python ``HubClient``s (in ``--procs`` worker processes) connect to
   A and join room ``storm``; a publisher on B publishes ``--rate`` messages/s;
3. A gets SIGTERM: each client receives ``reconnect {delay_ms: [min, max]}``, then
   1001; A is started again on the same port at once while B keeps publishing
   (the messages go to the room's Redis stream);
4. each client waits a random delay in the window, reconnects (backoff while A is
   still starting), re-joins with ``since`` and is replayed what it missed;
5. the publisher stops; every client must hold every offset, in order, once.

Printed: time from SIGTERM until every client was back and had recovered every
message published meanwhile; the peak accept rate (welcomes per second, in 100 ms
and 1 s buckets, as the clients saw them); reconnect delays (p50/p99/max); and the
checks (gaps, duplicates, unrecovered joins, clients missing). Exit status 0 only
when every check is zero and nobody came back before the window's minimum.

The restarted node reads every client's missed messages back from the room's
Redis stream; with redis-py's pure-Python reply parser that parsing dominates the
node's CPU during the storm (``"redis_parser"`` in the report says which one ran):
install ``hiredis`` (redis-py picks it up) for the figures in the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ROOM = "storm"
MAX_CLIENTS = 2000
#: Upper bound of the whole run, seconds.
DEADLINE = 240.0
#: Seconds node A may take to stop after SIGTERM before it is killed (and reported).
STOP_LIMIT = 45.0
DRAINS: set[asyncio.Future[Any]] = set()


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


#: ``--logs DIR``: where the nodes' output goes (else it is read and dropped).
LOG_DIR: Path | None = None


def drain(stream: asyncio.StreamReader | None, name: str = "") -> None:
    if stream is None:
        return
    if LOG_DIR is None or not name:
        DRAINS.add(asyncio.ensure_future(stream.read()))
        return

    async def keep() -> None:
        assert LOG_DIR is not None
        with (LOG_DIR / f"{name}.log").open("ab") as out:
            while chunk := await stream.read(65536):
                out.write(chunk)

    DRAINS.add(asyncio.ensure_future(keep()))


async def start_redis() -> tuple[asyncio.subprocess.Process, str]:
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
    drain(proc.stdout)
    return proc, f"redis://127.0.0.1:{port}/0"


#: ``--op-timeout``: the nodes' ``redis.op_timeout`` (None: the default).
OP_TIMEOUT: float | None = None


async def start_node(redis_url: str, port: int, window: tuple[float, float], name: str = "") -> Any:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "WIREHUB_REDIS_URL": redis_url,
        "WIREHUB_REDIS__PREFIX": "storm",
        "WIREHUB_STATS_INTERVAL": "0",
        "WIREHUB_HEARTBEAT__INTERVAL": "0",
        "WIREHUB_LIMITS__MAX_CONNECTIONS_PER_IP": "10000",
        "WIREHUB_HISTORY__SIZE": "100000",
        "WIREHUB_ROOMS": json.dumps(
            [{"pattern": ROOM, "presence_events": False, "max_members": 10000}]
        ),
        "WIREHUB_SHUTDOWN__RECONNECT_WINDOW": json.dumps(list(window)),
    }
    if OP_TIMEOUT is not None:
        env["WIREHUB_REDIS__OP_TIMEOUT"] = str(OP_TIMEOUT)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        *("-m", "wirehub", "serve", "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    await read_until(proc.stdout, "Uvicorn running on", 60)
    drain(proc.stdout, name)
    proc.start_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return proc


# -- the worker: many HubClients in one process -----------------------------------------


async def run_worker(url: str, first: int, count: int) -> None:
    """Connect ``count`` clients, report ready; on ``final <offset>`` report each one."""
    sys.path.insert(0, str(ROOT / "src"))
    from wirehub.client import HubClient

    states: list[dict[str, Any]] = []
    clients: list[HubClient] = []
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        st: dict[str, Any] = {
            "last": 0,
            "gaps": 0,
            "dups": 0,
            "lost_at": None,
            "back_at": None,
            "target": None,
            "recovered_at": None,
            "unrecovered": 0,
            "connects": 0,
            "window": None,
        }
        client = HubClient(
            url,
            client_id=f"s{first + i}",
            backoff_initial=0.2,
            backoff_cap=2.0,
            request_timeout=60,
            open_timeout=20,
        )

        def on_message(frame: dict[str, Any]) -> None:
            offset = frame["offset"]
            if st["last"] and offset != st["last"] + 1:
                if offset <= st["last"]:
                    st["dups"] += 1
                else:
                    st["gaps"] += 1
            st["last"] = max(st["last"], offset)
            target = st["target"]
            if target is not None and st["recovered_at"] is None and st["last"] >= target:
                st["recovered_at"] = time.time()

        def on_joined(frame: dict[str, Any]) -> None:
            if st["lost_at"] is None:
                return  # the first join
            st["target"] = int(frame["offset"])
            if frame.get("recovered") is False:
                st["unrecovered"] += 1
            if st["last"] >= st["target"] and st["recovered_at"] is None:
                st["recovered_at"] = time.time()

        def on_connect(_: dict[str, Any]) -> None:
            st["connects"] += 1
            if st["lost_at"] is not None and st["back_at"] is None:
                st["back_at"] = time.time()

        def on_disconnect(_: dict[str, Any]) -> None:
            if st["lost_at"] is None:
                st["lost_at"] = time.time()
                st["window"] = client._reconnect_window

        client.on("message", on_message)
        client.on("joined", on_joined)
        client.on("connect", on_connect)
        client.on("disconnect", on_disconnect)
        async with gate:
            await client.connect()
            await client.join(ROOM)
        states.append(st)
        clients.append(client)

    await asyncio.gather(*(one(i) for i in range(count)))
    print(json.dumps({"ready": len(clients)}), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    line = (await reader.readline()).decode().split()
    final = int(line[1])
    deadline = time.monotonic() + 120
    while any(st["last"] < final for st in states) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print(json.dumps({"states": states}), flush=True)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# -- the conductor ---------------------------------------------------------------------------


async def start_worker(url: str, first: int, count: int) -> Any:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        __file__,
        *("--worker", url, str(first), str(count)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )
    return proc


async def read_json(proc: Any, key: str, timeout: float) -> Any:
    async def scan() -> Any:
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError("worker exited early")
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if key in data:
                return data[key]

    return await asyncio.wait_for(scan(), timeout)


async def publisher(url: str, rate: float, stop: asyncio.Event, acks: list[int]) -> None:
    from wirehub.client import HubClient

    async with HubClient(url, client_id="publisher", request_timeout=30) as client:
        await client.join(ROOM)
        seq = 0
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            seq += 1
            acks.append(await client.publish(ROOM, {"seq": seq, "ts": time.time()}))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def peak(times: list[float], bucket: float) -> float:
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t / bucket)] = counts.get(int(t / bucket), 0) + 1
    return max(counts.values()) / bucket if counts else 0.0


async def conduct(opts: argparse.Namespace) -> dict[str, Any]:
    window = tuple(float(v) for v in opts.window.split(","))
    assert len(window) == 2
    clients = min(opts.clients, MAX_CLIENTS)
    redis, redis_url = await start_redis()
    port_a, port_b = free_port(), free_port()
    procs: list[Any] = [redis]
    try:
        a, b = await asyncio.gather(
            start_node(redis_url, port_a, window, "node-a"),
            start_node(redis_url, port_b, window, "node-b"),
        )
        procs += [a, b]
        url_a, url_b = f"ws://127.0.0.1:{port_a}/ws", f"ws://127.0.0.1:{port_b}/ws"
        per = [clients // opts.procs + (i < clients % opts.procs) for i in range(opts.procs)]
        starts = [sum(per[:i]) for i in range(opts.procs)]
        workers = [await start_worker(url_a, s, n) for s, n in zip(starts, per, strict=True)]
        procs += workers
        ready = await asyncio.gather(*(read_json(w, "ready", 120) for w in workers))
        assert sum(ready) == clients, ready
        print(f"{clients} clients on node A, publisher on node B at {opts.rate:g}/s", flush=True)

        stop = asyncio.Event()
        acks: list[int] = []
        pub = asyncio.ensure_future(publisher(url_b, opts.rate, stop, acks))
        await asyncio.sleep(opts.before)

        # The deploy: SIGTERM A, start it again on the same port at once.
        t0 = time.time()
        a.send_signal(signal.SIGTERM)
        killed = False
        try:
            await asyncio.wait_for(a.wait(), STOP_LIMIT)
        except TimeoutError:
            # A stopping node under a storm of reconnect attempts (each answered
            # 503 while it drains) may not get through its shutdown: say so.
            killed = True
            a.kill()
            await a.wait()
        stopped = time.time() - t0
        a = await start_node(redis_url, port_a, window, "node-a")
        procs.append(a)
        restarted = time.time() - t0
        print(
            f"node A: SIGTERM at {time.strftime('%H:%M:%S', time.localtime(t0))}"
            f".{int(t0 * 1000) % 1000:03d}, stopped in {stopped:.2f}s, "
            f"serving again {restarted:.2f}s after SIGTERM",
            flush=True,
        )

        await asyncio.sleep(max(window[1], restarted) + opts.after)
        stop.set()
        await asyncio.wait_for(pub, 30)
        final = acks[-1]
        for w in workers:
            w.stdin.write(f"final {final}\n".encode())
            await w.stdin.drain()
        states = [
            st
            for chunk in await asyncio.gather(*(read_json(w, "states", 150) for w in workers))
            for st in chunk
        ]
        await asyncio.gather(*(w.wait() for w in workers))
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 15)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        for task in DRAINS:
            task.cancel()

    back = [st for st in states if st["back_at"] is not None]
    recovered = [st for st in states if st["recovered_at"] is not None]
    delays = [st["back_at"] - st["lost_at"] for st in back]
    welcomes = [st["back_at"] for st in back]
    from redis.utils import HIREDIS_AVAILABLE

    return {
        "clients": clients,
        # The nodes inherit this environment: the same parser there.
        "redis_parser": "hiredis" if HIREDIS_AVAILABLE else "python (pip install hiredis)",
        "window_s": list(window),
        "published": len(acks),
        "final_offset": final,
        "node_a_stop_s": round(stopped, 2),
        "node_a_killed_after_s": STOP_LIMIT if killed else None,
        "node_a_restart_s": round(restarted, 2),
        "all_recovered_s": round(max(st["recovered_at"] for st in recovered) - t0, 2)
        if len(recovered) == clients
        else None,
        "first_back_s": round(min(welcomes) - t0, 2) if welcomes else None,
        "peak_accepts_per_s_100ms": round(peak(welcomes, 0.1)),
        "peak_accepts_per_s_1s": round(peak(welcomes, 1.0)),
        "reconnect_delay_s": {
            "min": round(min(delays), 2) if delays else None,
            "p50": round(statistics.median(delays), 2) if delays else None,
            "p99": round(percentile(delays, 0.99), 2) if delays else None,
            "max": round(max(delays), 2) if delays else None,
        },
        "before_window_min": sum(1 for d in delays if d < window[0] - 0.01),
        "window_received": sum(1 for st in states if st["window"] is not None),
        "checks": {
            "not_back": clients - len(back),
            "not_recovered": clients - len(recovered),
            "missing_last": sum(1 for st in states if st["last"] != final),
            "gaps": sum(st["gaps"] for st in states),
            "duplicates": sum(st["dups"] for st in states),
            "unrecovered_joins": sum(st["unrecovered"] for st in states),
            "extra_reconnects": sum(max(0, st["connects"] - 2) for st in states),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=MAX_CLIENTS)
    parser.add_argument("--procs", type=int, default=4, help="worker processes for the clients")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s published on B")
    parser.add_argument("--window", default="1,5", help="shutdown.reconnect_window: min,max s")
    parser.add_argument("--before", type=float, default=1.0, help="s of traffic before SIGTERM")
    parser.add_argument("--after", type=float, default=1.0, help="s of traffic after the window")
    parser.add_argument("--quick", action="store_true", help="500 clients, window 0.5,2")
    parser.add_argument(
        "--op-timeout", type=float, help="the nodes' redis.op_timeout (default: the hub's, 5 s)"
    )
    parser.add_argument("--logs", type=Path, help="write the nodes' output to DIR/node-*.log")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        url, first, count = opts.worker
        asyncio.run(run_worker(url, int(first), int(count)))
        return
    global LOG_DIR, OP_TIMEOUT
    LOG_DIR = opts.logs
    OP_TIMEOUT = opts.op_timeout
    if LOG_DIR is not None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
    if opts.quick:
        opts.clients, opts.window = min(opts.clients, 500), "0.5,2"
    sys.path.insert(0, str(ROOT / "src"))

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(conduct(opts), DEADLINE)

    report = asyncio.run(bounded())
    print(json.dumps(report, indent=2))
    checks = report["checks"]
    ok = (
        all(v == 0 for v in checks.values())
        and report["before_window_min"] == 0
        and report["node_a_killed_after_s"] is None
    )
    print("OK: every client back, every message recovered" if ok else "FAILED: see checks")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

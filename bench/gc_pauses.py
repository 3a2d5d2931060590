"""Full garbage collections while clients come and go, with and without ``server.gc_freeze``.

Run from the repository root::

    .venv/bin/python bench/gc_pauses.py                    # 2000 clients, 3 repetitions, ~1 min
    .venv/bin/python bench/gc_pauses.py --clients 500 --reps 1

Each repetition starts ``wirehub serve`` twice, with ``server.gc_freeze`` on (the
default) and off, and in each: a client process opens ``--clients`` joined
WebSocket connections, one at a time, then closes them all. A full (generation
2) collection stops the event loop for as long as it walks every tracked object,
and connections arriving or leaving are what trigger them (each leaves objects
that survive the young generations). Printed per run, from the hub's own
``/metrics`` (``wirehub_gc_pause_seconds{generation="2"}``,
``wirehub_loop_lag_seconds``): how many full collections ran while the clients
connected and while they left, their total and worst time, and the loop-lag
samples over 10 and 50 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import httpx

from conn_memory import CLIENT
from fanout_procs import free_port

GC2 = 'wirehub_gc_pause_seconds_{}{{generation="2"{}}}'
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    samples = {}
    for match in re.finditer(r"^(wirehub_\S+) (\S+)$", text, re.MULTILINE):
        samples[match.group(1)] = float(match.group(2))
    return samples


def window(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    count = delta(GC2.format("count", ""))
    worst = 0.0
    # The smallest bucket holding every collection of the window.
    for le in BUCKETS if count else ():
        if delta(GC2.format("bucket", f',le="{le}"')) >= count:
            worst = le
            break
    else:
        if count:
            worst = float("inf")
    lag = 'wirehub_loop_lag_seconds_bucket{{le="{}"}}'
    samples = delta(lag.format("+Inf"))
    return {
        "full_gcs": count,
        "total_ms": delta(GC2.format("sum", "")) * 1000,
        "worst_le_ms": worst * 1000,
        "lag_over_10ms": samples - delta(lag.format("0.01")),
        "lag_over_50ms": samples - delta(lag.format("0.05")),
    }


def run(clients: int, freeze: bool) -> dict[str, dict[str, float]]:
    port = free_port()
    env = {**os.environ, "WIREHUB_SERVER__GC_FREEZE": "true" if freeze else "false"}
    env.update(WIREHUB_STATS_INTERVAL="0", WIREHUB_SERVER__LOG_LEVEL="warning")
    env["WIREHUB_LIMITS__MAX_CONNECTIONS_PER_IP"] = "0"  # every client is on 127.0.0.1
    hub = subprocess.Popen(
        [sys.executable, "-m", "wirehub", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if hub.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the hub did not start")
            time.sleep(0.1)
        start = scrape(port)
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(clients)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdin is not None and client.stdout is not None
        if client.stdout.readline().strip() != "ready":
            raise SystemExit("the client process failed")
        joined = scrape(port)
        client.stdin.write("\n")
        client.stdin.flush()
        if client.stdout.readline().strip() != "closed":
            raise SystemExit("the client process failed to close")
        client.wait(30)
        left = scrape(port)
        deadline = time.monotonic() + 30
        while left.get('wirehub_connections{kind="ws"}', 0.0) and time.monotonic() < deadline:
            time.sleep(0.1)  # the hub's side of the closes is still under way
            left = scrape(port)
        return {"connect": window(start, joined), "leave": window(joined, left)}
    finally:
        hub.terminate()
        hub.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.clients} joined clients connect one by one, then all leave")
    print("| rep | gc_freeze | phase | full GCs | total ms | worst ≤ ms | loop lag >10 / >50 ms |")
    print("|---|---|---|---:|---:|---:|---|")
    for rep in range(1, args.reps + 1):
        for freeze in (True, False):
            for phase, r in run(args.clients, freeze).items():
                print(
                    f"| {rep} | {'on' if freeze else 'off'} | {phase} | {r['full_gcs']:.0f} | "
                    f"{r['total_ms']:.1f} | {r['worst_le_ms']:g} | "
                    f"{r['lag_over_10ms']:.0f} / {r['lag_over_50ms']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

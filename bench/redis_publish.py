"""What a publish over Redis costs the publishing node: CPU per script call and per message.

Run from the repository root (needs ``redis-server`` on the PATH)::

    .venv/bin/python bench/redis_publish.py       # ~20 s

A hub with the Redis broker on a private ``redis-server`` (started here on a
free port, pinned to the other core), uvloop, one room this node follows. A
"burst" is K publishes made in one loop pass, which the broker sends as one
call of its publish script (brokers/redis/pipeline.py); the hub process's CPU
time (user + system, ``os.times``) is read around N bursts. With K = 1, 16 and
100 the cost splits into a part per call (the round trip: redis-py's client,
its pool and timeouts, two syscalls and a wakeup) and a part per message (the
frame, the packed arguments, the answer, the local delivery). redis-server's
own CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import time

import uvloop

from wirehub.hub import Hub
from wirehub.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_redis(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


async def run(port: int, bursts: int) -> None:
    await wait_for_redis(port)
    hub = Hub(Settings(redis_url=f"redis://127.0.0.1:{port}/0", stats_interval=0))
    await hub.start()
    try:
        await measure(hub, bursts)
    finally:
        await hub.stop()


async def measure(hub: Hub, bursts: int) -> None:
    broker = hub.node.broker
    data = {"t": time.time(), "pad": "x" * 100}
    loop = asyncio.get_running_loop()

    async def burst(k: int) -> None:
        left = k
        finished = loop.create_future()

        def done(result: object) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                finished.set_result(None)

        for _ in range(k):
            broker.publish_soon("bench", "pub", data, exclude=None, done=done)
        await finished

    for _ in range(50):  # warm up: the script loaded, the connection made
        await burst(16)
    print("| publishes per call | CPU µs per call | CPU µs per message | user / system |")
    print("|---:|---:|---:|---:|")
    for k in (1, 16, 100):
        n = max(20, bursts // k)
        t0 = os.times()
        for _ in range(n):
            await burst(k)
        t1 = os.times()
        user, system = (t1.user - t0.user) / (n * k), (t1.system - t0.system) / (n * k)
        per_message = (user + system) * 1e6
        print(
            f"| {k} | {per_message * k:.0f} | {per_message:.1f} | "
            f"{user * 1e6:.1f} / {system * 1e6:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=10000, help="publishes per row, about")
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on the PATH")
    port = free_port()
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") and os.cpu_count() != 1 else []
    redis = subprocess.Popen(
        [*pin, binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        uvloop.run(run(port, args.bursts))
    finally:
        redis.terminate()
        redis.wait(10)


if __name__ == "__main__":
    main()

"""Where an idle joined WebSocket connection's memory goes, by allocation site.

Run from the repository root::

    .venv/bin/python bench/conn_memory.py              # 1000 connections, ~10 s
    .venv/bin/python bench/conn_memory.py --group filename --top 15

Starts the server ``wirehub serve`` runs (``build_server``: uvloop, the hub's
HTTP and WebSocket protocols) in this process, then tracemalloc, then opens
``--connections`` joined connections from a client subprocess (so the clients'
memory is not counted) and prints the traced Python memory per connection,
the biggest allocation sites first. bench/fanout.py's scenario 4 measures RSS
from outside; this tells what the RSS is made of (tracemalloc sees Python
allocations; uvloop's and the kernel's are not in it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import subprocess
import sys
import tracemalloc

import uvloop

#: Opens N joined connections, says "ready", closes them all on a line from stdin.
CLIENT = r"""
import asyncio, sys, websockets
async def main(port, n):
    conns = []
    for i in range(n):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?client_id=c{i}")
        await ws.recv()
        await ws.send('{"type":"join","room":"idle","ref":1}')
        while '"joined"' not in await ws.recv():
            pass
        conns.append(ws)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(ws.close() for ws in conns))
    print("closed", flush=True)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(connections: int, group: str, top: int, depth: int) -> None:
    from wirehub.server import build_server
    from wirehub.settings import Settings

    port = free_port()
    settings = Settings(server={"port": port, "log_level": "warning"}, stats_interval=0, demo=False)
    server = build_server(settings)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    gc.collect()
    tracemalloc.start(depth)
    before = tracemalloc.take_snapshot()
    clients = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        str(port),
        str(connections),
        stdin=subprocess.PIPE,  # the clients hold on until a line comes (or they are killed)
        stdout=subprocess.PIPE,
    )
    assert clients.stdout is not None
    line = await clients.stdout.readline()
    if line.strip() != b"ready":
        raise SystemExit(f"the client process failed: {line!r}")
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, group)
    total = sum(s.size_diff for s in stats)
    print(f"{connections} idle joined connections: {total / connections / 1024:.2f} KiB each")
    print("   bytes  blocks  allocated at")
    for s in stats[:top]:
        where = s.traceback.format()[-1].strip()[:110]
        print(f"{s.size_diff / connections:8.0f} {s.count_diff / connections:7.1f}  {where}")
    clients.kill()
    await clients.wait()
    server.should_exit = True
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--group", choices=("lineno", "filename"), default="lineno")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--depth", type=int, default=1, help="traceback frames kept")
    args = parser.parse_args()
    uvloop.run(measure(args.connections, args.group, args.top, args.depth))


if __name__ == "__main__":
    main()

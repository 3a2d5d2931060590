"""The physical floor of fan-out on this machine: what one write of a frame to a socket costs.

Run from the repository root::

    .venv/bin/python bench/floor.py             # ~20 s
    .venv/bin/python bench/floor.py --quick     # ~10 s

A server that delivers a message to N WebSocket members performs, at the very
least, one ``write``/``send`` system call per member (unless it coalesces several
frames owed to one member into one write). This script measures that cost
directly, with nothing else around it: N connected loopback TCP sockets, a
~150-byte frame (the size of a benchmark ``message``), and a tight loop writing it
once to each socket, timed in wall clock and in CPU time (user + system) of the
writing process. The same for one write of k coalesced frames (k = 1, 4, 16): the
cost per write barely moves with k, so the cost per frame falls almost k-fold,
which is the case for batching.

Writers:

* ``os.write`` and ``socket.send`` on blocking sockets (the bare syscall from Python);
* ``transport.write`` on asyncio's own loop and on uvloop (what a Python server
  calls; both try the syscall at once when nothing is buffered).

Readers, two set-ups:

* ``inline``: the writing process drains the receivers itself between rounds
  (untimed): nobody is waiting on the sockets, so a write wakes no one;
* ``process``: another process, pinned to the other core, waits in epoll on the
  receiving ends and reads as data comes, as the benchmark's load generator does:
  a write may then also wake that process up, and the sender pays for the wakeup.

The CPU figure is the floor to compare with a server's "CPU µs per delivery"
(bench/fanout.py): the part of a delivery no Python code can shed without
writing less often.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import uvloop

__all__ = ["main"]

FRAME = b"\x81\x7e\x00\x92" + b'{"type":"message","room":"bench","data":{"seq":1}}'.ljust(146, b" ")


WRITERS = ("os.write", "socket.send", "asyncio transport.write", "uvloop transport.write")


def pin(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})


def cores() -> tuple[int | None, int | None]:
    """(writer core, reader core), or Nones on a machine with fewer than 2."""
    mine = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (mine[0], mine[1]) if len(mine) >= 2 else (None, None)


def reader(port: int, count: int, core: int | None, received: Any, ready: Any) -> None:
    """Connect ``count`` sockets to the writer and read everything, counting bytes."""
    pin(core)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    ready.set()
    total = 0
    open_ = count
    while open_:
        for key, _ in sel.select():
            sock = key.fileobj
            try:
                while data := sock.recv(262144):  # type: ignore[union-attr]
                    total += len(data)
            except BlockingIOError:
                received.value = total
                continue
            sel.unregister(sock)
            open_ -= 1
        received.value = total


class Sockets:
    """``count`` connected loopback pairs: the writer's ends, and who reads the others."""

    def __init__(self, count: int, mode: str, reader_core: int | None) -> None:
        self.mode = mode
        self.sent = 0
        listener = socket.create_server(("127.0.0.1", 0), backlog=count)
        port = listener.getsockname()[1]
        self.proc: Any = None
        self.peers: list[socket.socket] = []
        if mode == "process":
            ctx = mp.get_context("fork")
            self.received = ctx.Value("q", 0, lock=False)
            ready = ctx.Event()
            self.proc = ctx.Process(
                target=reader, args=(port, count, reader_core, self.received, ready)
            )
            self.proc.start()
            self.writers = [listener.accept()[0] for _ in range(count)]
            ready.wait(30)
        else:
            self.writers = []
            for _ in range(count):
                peer = socket.create_connection(("127.0.0.1", port))
                peer.setblocking(False)
                self.peers.append(peer)
                self.writers.append(listener.accept()[0])
        listener.close()
        for sock in self.writers:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def drain(self) -> None:
        """Untimed: wait until every byte written so far has been read."""
        if self.mode == "process":
            deadline = time.monotonic() + 30
            while self.received.value < self.sent and time.monotonic() < deadline:
                time.sleep(0.0005)
            return
        for peer in self.peers:
            with contextlib.suppress(BlockingIOError):
                while peer.recv(262144):
                    pass

    def close(self) -> None:
        for sock in self.writers + self.peers:
            sock.close()
        if self.proc is not None:
            self.proc.join(10)


def measure_sync(
    socks: Sockets, payload: bytes, rounds: int, batches: int, method: str
) -> tuple[float, float]:
    """Median µs per write over ``batches`` (wall, CPU), each ``rounds`` x every socket."""
    if method == "os.write":
        fds = [s.fileno() for s in socks.writers]
        write: Callable[..., Any] = os.write
        targets: list[Any] = fds
    else:
        targets = [s.send for s in socks.writers]
        write = None  # type: ignore[assignment]
    walls, cpus = [], []
    for _ in range(batches):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            if write is not None:
                for fd in targets:
                    write(fd, payload)
            else:
                for send in targets:
                    send(payload)
        t1, c1 = time.perf_counter(), time.process_time()
        n = rounds * len(targets)
        socks.sent += n * len(payload)
        walls.append((t1 - t0) / n * 1e6)
        cpus.append((c1 - c0) / n * 1e6)
        socks.drain()
    return statistics.median(walls), statistics.median(cpus)


def measure_async(
    socks: Sockets, payload: bytes, rounds: int, batches: int, loop_kind: str
) -> tuple[float, float]:
    """The same through ``transport.write`` on an asyncio or uvloop event loop."""

    async def body() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        transports = []
        for sock in socks.writers:
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock)
            transports.append(transport)
        walls, cpus = [], []
        for _ in range(batches):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(rounds):
                for transport in transports:
                    transport.write(payload)
            t1, c1 = time.perf_counter(), time.process_time()
            n = rounds * len(transports)
            socks.sent += n * len(payload)
            walls.append((t1 - t0) / n * 1e6)
            cpus.append((c1 - c0) / n * 1e6)
            while any(t.get_write_buffer_size() for t in transports):
                await asyncio.sleep(0.001)  # the loop flushes what the sockets did not take
            socks.drain()
        buffered = sum(1 for t in transports if t.get_write_buffer_size())
        for transport in transports:
            transport.abort()
        assert buffered == 0
        return statistics.median(walls), statistics.median(cpus)

    if loop_kind == "uvloop":
        return uvloop.run(body())
    return asyncio.run(body())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches")
    parser.add_argument("--sockets", type=int, default=100, help="connected pairs (default 100)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin writer and reader")
    args = parser.parse_args()
    writer_core, reader_core = (None, None) if args.no_pin else cores()
    pin(writer_core)
    batches = 5 if args.quick else 15
    print(
        f"{args.sockets} loopback TCP sockets, frame {len(FRAME)} B; writer on core "
        f"{writer_core}, reader process on core {reader_core}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; median of {batches} batches"
    )
    print()
    print("| readers | writer | frames per write | µs/write wall | µs/write CPU | CPU µs/frame |")
    print("|---|---|---|---|---|---|")
    for mode in ("inline", "process"):
        for method in WRITERS:
            for k in (1, 4, 16):
                payload = FRAME * k
                # Keep each batch well inside a socket's buffers: ~32 KiB per socket.
                rounds = max(2, 32768 // len(payload))
                socks = Sockets(args.sockets, mode, reader_core)
                try:
                    if "transport" in method:
                        loop_kind = method.split()[0]
                        wall, cpu = measure_async(socks, payload, rounds, batches, loop_kind)
                    else:
                        wall, cpu = measure_sync(socks, payload, rounds, batches, method)
                finally:
                    socks.close()
                print(
                    f"| {mode} | {method} | {k} | {wall:.2f} | {cpu:.2f} | {cpu / k:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

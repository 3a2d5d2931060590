"""The fan-out hot path in one process, without sockets: nanoseconds of Python per delivery.

Run from the repository root::

    .venv/bin/python bench/hotpath.py               # ~10 s
    taskset -c 1 .venv/bin/python bench/hotpath.py  # steadier: one core

A room of N members whose transports hand every frame to a C builtin (``len``)
in place of a socket: what is left is wirehub's own work per delivery — the
room's first message of a pass held by every member (``hold_fresh``), the
coalescer's flush, the end of the room pass writing each member
(``flush_holders``) — with no syscall and no kernel time around it. Printed
beside it, the floor of any Python server: a loop calling a writer per member.
The network benchmark (bench/fanout.py) gives the whole cost; this one says how
much of it is wirehub's Python, and moves when that code does.

Each figure is the best of ``--rounds`` rounds (the machine is shared: the
minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from wirehub.core.coalesce import Coalescer
from wirehub.core.connection import Connection
from wirehub.core.rooms import RoomRegistry

FRAME = '{"type":"message","room":"r","sender":"pub","data":{"t":0,"pad":"xxxxxxxx"},"offset":1}'


class _Transport:
    """A transport that coalesces and whose raw writer is a C builtin (nothing is sent)."""

    kind = "ws"
    coalesces = True
    write_frame = staticmethod(len)

    def try_write(self, out: Any) -> bool:
        return True

    def try_writelines(self, outs: Any) -> bool:
        return True


async def measure(members: int, messages: int, per_pass: int) -> tuple[float, float]:
    """(deliver, flush) ns per delivery for ``messages`` messages, ``per_pass`` per loop pass."""
    rooms = RoomRegistry()
    coalescer = rooms.coalescer = Coalescer()
    for i in range(members):
        conn = Connection(f"c{i}", _Transport(), coalescer=coalescer)  # type: ignore[arg-type]
        conn.start()
        rooms.join(conn, "r")
    deliver = flush = 0.0
    offset = 0
    for _ in range(messages // per_pass):
        t0 = time.perf_counter()
        for _ in range(per_pass):
            offset += 1
            rooms.deliver("r", offset, FRAME)
        t1 = time.perf_counter()
        coalescer.flush()
        deliver += t1 - t0
        flush += time.perf_counter() - t1
    n = members * (messages // per_pass) * per_pass
    return deliver / n * 1e9, flush / n * 1e9


def plain_loop(members: int, messages: int) -> float:
    """ns per call of a loop over the members' writers: the floor of any Python fan-out."""
    writers = [len] * members
    frame = FRAME.encode()
    t0 = time.perf_counter()
    for _ in range(messages):
        for write in writers:
            write(frame)
    return (time.perf_counter() - t0) / (members * messages) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.members} members, {args.messages} messages, best of {args.rounds} rounds")
    print("| messages per pass | hold (ns/delivery) | end of pass | total |")
    print("|---:|---:|---:|---:|")
    for per_pass in (1, 16):
        runs = [
            asyncio.run(measure(args.members, args.messages, per_pass)) for _ in range(args.rounds)
        ]
        hold, end = min(runs, key=sum)
        print(f"| {per_pass} | {hold:.0f} | {end:.0f} | {hold + end:.0f} |")
    floor = min(plain_loop(args.members, args.messages) for _ in range(args.rounds))
    print(f"\na plain loop calling one writer per member: {floor:.0f} ns per delivery")


if __name__ == "__main__":
    main()

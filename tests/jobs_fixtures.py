"""Jobs used by the test suite (``[jobs] modules = ["jobs_fixtures"]``).

Imported by the hub under test and by ``wirehub worker`` subprocesses, so
every job here behaves the same whichever runner executes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from wirehub.jobs import JobContext, job

__all__ = [
    "add",
    "boom",
    "count",
    "cpu_spin",
    "cpu_square",
    "digest_upload",
    "echo",
    "flaky",
    "flood",
    "flood_async",
    "flood_counted",
    "flood_counted_cpu",
    "flood_cpu",
    "flood_on_loop",
    "sleepy",
    "steps",
    "steps_retry",
    "stubborn",
    "until_cancelled",
]


#: Outputs each ``flood_counted`` job emitted so far, by job id (the embedded runner's
#: threads share this process; other runners pass ``counter``, a file, instead).
PRODUCED: dict[str, int] = {}


@job(name="echo")
async def echo(ctx: JobContext, value: Any = None) -> Any:
    return value


@job(name="add")
def add(ctx: JobContext, a: int, b: int = 0) -> dict[str, Any]:
    """A sync job: runs in a thread (embedded) or in the worker."""
    return {"sum": a + b, "pid": os.getpid()}


@job(name="count")
async def count(ctx: JobContext, n: int = 3, delay: float = 0.0) -> int:
    """Progress and one output per step."""
    for i in range(1, n + 1):
        await asyncio.sleep(delay)
        ctx.output({"i": i})
        ctx.progress(i / n, f"step {i} of {n}")
    return n * (n + 1) // 2


@job(name="boom")
def boom(ctx: JobContext, message: str = "kaput") -> None:
    raise ValueError(message)


@job(name="sleepy", timeout=0.5)
async def sleepy(ctx: JobContext, seconds: float = 30.0) -> str:
    await asyncio.sleep(seconds)
    return "woke up"


@job(name="until_cancelled")
async def until_cancelled(ctx: JobContext, limit: float = 20.0) -> str:
    """Cooperative: says it started, then polls ``ctx.cancelled``."""
    ctx.output("started")
    deadline = time.monotonic() + limit
    while not ctx.cancelled and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return "stopped" if ctx.cancelled else "limit"


@job(name="stubborn")
async def stubborn(ctx: JobContext, seconds: float = 20.0) -> str:
    """Ignores cancellation: only a hard stop ends it early."""
    ctx.output("started")
    await asyncio.sleep(seconds)
    return "finished anyway"


@job(name="steps")
def steps(ctx: JobContext, n: int = 20, delay: float = 0.2) -> int:
    """A sync job that reports each step (used to kill a worker mid-job)."""
    for i in range(n):
        ctx.progress(i / n, f"step {i}")
        time.sleep(delay)
    return n


@job(name="steps_retry", retries=1)
def steps_retry(ctx: JobContext, n: int = 20, delay: float = 0.2) -> dict[str, int]:
    """Like ``steps``, retried once: after a lost worker the next attempt finishes."""
    for i in range(n):
        ctx.progress(i / n, f"attempt {ctx.attempt} step {i}")
        time.sleep(delay)
    return {"attempt": ctx.attempt}


@job(name="flaky", retries=1)
def flaky(ctx: JobContext) -> dict[str, int]:
    """Fails on its first attempt only."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": ctx.attempt}


@job(name="cpu_square", cpu=True)
def cpu_square(ctx: JobContext, n: int) -> dict[str, int]:
    ctx.progress(0.5, "squaring")
    return {"square": n * n, "pid": os.getpid()}


@job(name="cpu_spin", cpu=True)
def cpu_spin(ctx: JobContext, seconds: float = 30.0) -> str:
    """CPU-bound and deaf to cancellation: only killing the process stops it."""
    ctx.output("started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(1000))
    return "spun"


@job(name="digest_upload")
def digest_upload(ctx: JobContext, label: str = "") -> dict[str, Any]:
    """Reads the uploaded file by path and hashes it again."""
    assert ctx.upload is not None, "this job needs an upload"
    digest = hashlib.sha256()
    with ctx.upload.open() as f:
        while block := f.read(1 << 20):
            digest.update(block)
    ctx.progress(1.0, "hashed")
    return {
        "label": label,
        "name": ctx.upload.name,
        "size": Path(ctx.upload.path).stat().st_size,
        "sha256": digest.hexdigest(),
    }


@job(name="flood")
def flood(ctx: JobContext, n: int = 1000) -> int:
    """Outputs ``{"i": 0}`` … ``{"i": n-1}`` as fast as it can (a thread)."""
    for i in range(n):
        ctx.output({"i": i})
    return n


@job(name="flood_async")
async def flood_async(ctx: JobContext, n: int = 1000) -> int:
    """The same on the hub's loop, waiting for room with ``aoutput``."""
    for i in range(n):
        await ctx.aoutput({"i": i})
    return n


@job(name="flood_cpu", cpu=True)
def flood_cpu(ctx: JobContext, n: int = 1000) -> int:
    """The same from a process, through its pipe."""
    for i in range(n):
        ctx.output({"i": i})
    return n


@job(name="flood_on_loop")
async def flood_on_loop(ctx: JobContext, n: int = 100_000) -> int:
    """Wrong on purpose: sync ``ctx.output`` in an async job that never awaits."""
    for i in range(n):
        ctx.output(i)
    return n


def _write_count(counter: str, done: int) -> None:
    tmp = Path(f"{counter}.tmp")
    tmp.write_text(str(done))
    os.replace(tmp, counter)  # a reader never sees a half-written file


def _count(ctx: JobContext, n: int, counter: str | None) -> int:
    done = 0
    for i in range(n):
        if ctx.cancelled:
            break
        ctx.output({"i": i})
        done = PRODUCED[ctx.job_id] = i + 1
        if counter is not None and done % 64 == 0:
            _write_count(counter, done)
    if counter is not None:
        _write_count(counter, done)
    return done


@job(name="flood_counted")
def flood_counted(ctx: JobContext, n: int = 10_000_000, counter: str | None = None) -> int:
    """Floods until cancelled, counting what it emitted (``PRODUCED``, or the file ``counter``
    every 64 outputs), so a test can see the producer stop while the hub is stalled."""
    return _count(ctx, n, counter)


@job(name="flood_counted_cpu", cpu=True)
def flood_counted_cpu(ctx: JobContext, counter: str, n: int = 10_000_000) -> int:
    """``flood_counted`` in a process: the count is in the file ``counter``."""
    return _count(ctx, n, counter)

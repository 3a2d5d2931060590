"""Jobs used by bench/job_flood.py (``[jobs] modules = ["flood_jobs"]``).

Each emits ``n`` outputs ``{"i": 0}``, ``{"i": 1}``, … as fast as it can, one per
runner flavour: a thread (sync), the hub's loop (async), a process (``cpu=True``).
"""

from __future__ import annotations

from wirehub.jobs import JobContext, job

__all__ = ["flood", "flood_async", "flood_cpu"]


@job(name="flood")
def flood(ctx: JobContext, n: int = 300_000) -> int:
    for i in range(n):
        ctx.output({"i": i})
    return n


@job(name="flood_async")
async def flood_async(ctx: JobContext, n: int = 300_000) -> int:
    for i in range(n):
        await ctx.aoutput({"i": i})
    return n


@job(name="flood_cpu", cpu=True)
def flood_cpu(ctx: JobContext, n: int = 300_000) -> int:
    for i in range(n):
        ctx.output({"i": i})
    return n

"""Jobs used by bench/jobs.py (``[jobs] modules = ["bench_jobs"]``)."""

from __future__ import annotations

from typing import Any

from wirehub.jobs import JobContext, job

__all__ = ["noop", "noop_sync"]


@job(name="noop")
async def noop(ctx: JobContext, i: int = 0) -> Any:
    return i


@job(name="noop_sync")
def noop_sync(ctx: JobContext, i: int = 0) -> Any:
    return i

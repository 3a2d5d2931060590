"""Two jobs: one streams a partial answer token by token, one burns CPU in its own process.

Run with ``wirehub serve --config examples/jobs/hub.toml`` (from the repository root,
``PYTHONPATH=examples/jobs``), then ``wirehub jobs submit answer --arg question=why --follow``.
"""

from __future__ import annotations

import asyncio
import math

from wirehub.jobs import JobContext, job

__all__ = ["answer", "count_primes"]


@job(name="answer", timeout=60)
async def answer(ctx: JobContext, question: str, words: int = 12) -> str:
    """Stream an answer word by word, like tokens from a language model."""
    text = []
    for i in range(words):
        if ctx.cancelled:
            break
        await asyncio.sleep(0.05)  # stands in for waiting on the model
        token = f"word{i}"
        text.append(token)
        ctx.output({"token": token})
        ctx.progress((i + 1) / words)
    return f"{question}? " + " ".join(text)


@job(name="count_primes", cpu=True, timeout=300)
def count_primes(ctx: JobContext, limit: int = 2_000_000) -> int:
    """CPU-bound: runs in its own process, so the hub stays responsive."""
    found = 0
    step = max(1, limit // 20)
    for n in range(2, limit):
        if n % step == 0:
            ctx.progress(n / limit, f"checked {n}")
            if ctx.cancelled:
                break
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            found += 1
    return found

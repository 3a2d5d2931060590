"""The tutorial's file flow: a client pushes a file over WebSocket, a separate worker
process handles it, and the result comes back to the same client.

The job receives a file reference (``ctx.upload``), never the bytes in a message.
"""

from __future__ import annotations

import hashlib

from wirehub.jobs import JobContext, job

__all__ = ["inspect_file"]


@job(name="inspect_file", timeout=600, retries=1)
def inspect_file(ctx: JobContext, top: int = 3) -> dict[str, object]:
    """Count lines and bytes, find the most frequent bytes; idempotent (safe to retry)."""
    assert ctx.upload is not None, "submit this job with an upload"
    counts = [0] * 256
    lines = 0
    digest = hashlib.sha256()
    done = 0
    with ctx.upload.open() as f:
        while block := f.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\n")
            for value in set(block[:4096]):
                counts[value] += block.count(bytes([value]))
            done += len(block)
            ctx.progress(done / max(ctx.upload.size, 1), f"{done} bytes read")
            if ctx.cancelled:
                raise RuntimeError("cancelled")
    frequent = sorted(range(256), key=counts.__getitem__, reverse=True)[:top]
    return {
        "name": ctx.upload.name,
        "bytes": done,
        "lines": lines,
        "sha256": digest.hexdigest(),
        "frequent_bytes": frequent,
    }

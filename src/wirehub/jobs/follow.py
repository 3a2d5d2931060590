"""Client side of jobs and uploads over WebSocket (used by the CLI and the benchmark).

Plain ``websockets`` + JSON: no hub objects, so it runs anywhere the
``wirehub`` package is installed. Callbacks report progress; the functions
return the job's final event (``job.result``, ``job.failed`` or ``job.cancelled``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

__all__ = [
    "FINAL_EVENTS",
    "JobError",
    "file_sha256",
    "follow_job",
    "output_items",
    "submit_job",
    "upload_file",
]

FINAL_EVENTS = frozenset({"job.result", "job.failed", "job.cancelled"})

OnEvent = Callable[[dict[str, Any]], None]


class JobError(Exception):
    """The hub answered with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame


def output_items(frame: dict[str, Any]) -> list[Any]:
    """The outputs a ``job.output`` frame carries, in order: its ``items``, or its one ``data``.

    The hub coalesces consecutive outputs of a job into one frame with ``items``.
    """
    items = frame.get("items")
    return items if isinstance(items, list) else [frame.get("data")]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file read in 1 MiB blocks: what ``upload.start`` must announce."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def _request(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    ref = frame["ref"] = os.urandom(4).hex()
    await ws.send(orjson.dumps(frame).decode())
    while True:
        reply = orjson.loads(await ws.recv())
        if reply.get("ref") == ref:
            if reply.get("type") == "error":
                raise JobError(reply)
            return reply


async def follow_job(ws: ClientConnection, job_id: str, on_event: OnEvent) -> dict[str, Any]:
    """Read frames until the job's final event; pass each job event to ``on_event``."""
    while True:
        frame = orjson.loads(await ws.recv())
        if frame.get("job_id") != job_id:
            continue
        on_event(frame)
        if frame.get("type") in FINAL_EVENTS:
            return frame


async def submit_job(
    url: str, job: str, args: dict[str, Any], *, on_event: OnEvent, follow: bool = True
) -> dict[str, Any]:
    """``job.submit`` over WebSocket; with ``follow`` wait for the final event."""
    async with connect(url, max_size=2**24) as ws:
        await ws.recv()  # welcome
        accepted = await _request(ws, {"type": "job.submit", "job": job, "args": args})
        on_event(accepted)
        if not follow:
            return accepted
        return await follow_job(ws, accepted["job_id"], on_event)


async def upload_file(
    url: str,
    path: Path,
    *,
    job: str | None = None,
    args: dict[str, Any] | None = None,
    on_bytes: Callable[[int, int], None] = lambda sent, total: None,
    on_event: OnEvent = lambda event: None,
    window: int = 4,
) -> dict[str, Any]:
    """Upload ``path`` in chunks (up to ``window`` unacknowledged), then follow its job.

    Returns ``upload.complete`` when no job is named, else the job's final event.
    """
    size = (await asyncio.to_thread(path.stat)).st_size
    sha256 = await asyncio.to_thread(file_sha256, path)
    async with connect(url, max_size=2**24) as ws:
        await ws.recv()  # welcome
        start: dict[str, Any] = {
            "type": "upload.start",
            "name": path.name,
            "size": size,
            "sha256": sha256,
        }
        if job is not None:
            start["job"] = job
            start["args"] = args or {}
        ready = await _request(ws, start)
        upload_id, chunk, offset = ready["upload_id"], ready["chunk_size"], ready["offset"]
        acked = offset
        with path.open("rb") as f:
            f.seek(offset)
            while acked < size:
                while offset < size and offset - acked < chunk * window:
                    data = f.read(min(chunk, size - offset))
                    await ws.send(data)
                    offset += len(data)
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == "error":
                    raise JobError(frame)
                if frame.get("type") == "upload.ack":
                    acked = frame["offset"]
                    on_bytes(acked, size)
        complete = await _request(ws, {"type": "upload.finish", "upload_id": upload_id})
        on_event(complete)
        if not complete.get("job_id"):
            return complete
        return await follow_job(ws, complete["job_id"], on_event)

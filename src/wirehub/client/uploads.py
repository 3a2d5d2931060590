"""Uploads from the client side: files streamed from disk in acknowledged chunks.

The protocol (docs/protocol.md, "Uploads"): ``upload.start {name, size, sha256}``
→ ``upload.ready {upload_id, offset, chunk_size}``; binary frames of at most
``chunk_size`` bytes, each answered by ``upload.ack {offset}``; ``upload.finish``
→ ``upload.complete``. After a drop the client sends ``upload.start`` again with
its ``upload_id`` and goes on from the offset the hub acknowledged.

A file is never read whole: :class:`UploadSource` hashes it in 1 MiB blocks
and reads each chunk when it is sent, so the client holds at most
``upload_window`` chunks (plus one hashing block), whatever the file's size.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from wirehub.client.errors import Disconnected, error_from_wire
from wirehub.client.subscription import call_safely

if TYPE_CHECKING:
    from wirehub.client.connection import HubClient
    from wirehub.client.jobs import OnEvent

__all__ = ["HASH_BLOCK", "UploadSource", "file_sha256", "run_upload", "upload_file"]

#: Bytes hashed per read when a file's sha256 is computed before the upload.
HASH_BLOCK = 1 << 20
#: Times an upload starts again after a drop before it gives up.
MAX_RESUMES = 5


def file_sha256(path: Path, size: int | None = None) -> str:
    """Hex sha256 of a file's first ``size`` bytes (all of it by default), read in blocks."""
    digest = hashlib.sha256()
    left = size
    with path.open("rb") as f:
        while left is None or left > 0:
            block = f.read(HASH_BLOCK if left is None else min(HASH_BLOCK, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


class UploadSource:
    """What an upload sends: bytes in memory, or a file read one chunk at a time.

    ``await source.prepare()`` gives ``size`` and ``sha256`` (a file is hashed in
    :data:`HASH_BLOCK` reads, in a thread); ``await source.read(offset, n)`` reads
    one chunk. ``largest_read`` tells the most bytes any one read returned.
    """

    def __init__(self, source: str | os.PathLike[str] | bytes, name: str | None = None) -> None:
        self._data: bytes | None = None
        self._path: Path | None = None
        self._file: IO[bytes] | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self._data = bytes(source)
            self.name = name or "upload.bin"
        else:
            self._path = Path(source)
            self.name = name or self._path.name
        self.size = 0
        self.sha256 = ""
        self.largest_read = 0

    async def prepare(self) -> None:
        """Measure and hash the source (what ``upload.start`` announces)."""
        if self._data is not None:
            self.size = len(self._data)
            self.sha256 = hashlib.sha256(self._data).hexdigest()
            return
        assert self._path is not None
        self.size = (await asyncio.to_thread(self._path.stat)).st_size
        # Exactly the bytes that will be sent: a file that grows meanwhile still matches.
        self.sha256 = await asyncio.to_thread(file_sha256, self._path, self.size)

    async def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (never past the announced size)."""
        n = max(0, min(n, self.size - offset))
        if self._data is not None:
            chunk = self._data[offset : offset + n]
        else:
            chunk = await asyncio.to_thread(self._read_file, offset, n)
        self.largest_read = max(self.largest_read, len(chunk))
        return chunk

    def _read_file(self, offset: int, n: int) -> bytes:
        if self._file is None:
            assert self._path is not None
            self._file = self._path.open("rb")
        self._file.seek(offset)
        return self._file.read(n)

    def close(self) -> None:
        """Close the file, if one is open (``run_upload`` does it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


async def run_upload(
    client: HubClient,
    source: UploadSource,
    *,
    job: str | None = None,
    args: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], Any] | None = None,
    upload_id: str | None = None,
) -> dict[str, Any]:
    """Upload ``source`` over ``client``; resume after drops; return ``upload.complete``."""
    try:
        await source.prepare()
        start: dict[str, Any] = {
            "type": "upload.start",
            "name": source.name,
            "size": source.size,
            "sha256": source.sha256,
        }
        if job is not None:
            start["job"] = job
            if args:
                start["args"] = args
        attempts = 0
        while True:
            if upload_id is not None:
                start["upload_id"] = upload_id
            try:
                ready = await client._request(start)
                upload_id = str(ready["upload_id"])
                await _send_chunks(client, upload_id, source, ready, on_progress)
                return await client._request({"type": "upload.finish", "upload_id": upload_id})
            except Disconnected:
                attempts += 1
                if client._closing or not client.reconnect or attempts > MAX_RESUMES:
                    raise
                await client.wait_connected(client.request_timeout)
    finally:
        source.close()


async def _send_chunks(
    client: HubClient,
    upload_id: str,
    source: UploadSource,
    ready: dict[str, Any],
    on_progress: Callable[[int, int], Any] | None,
) -> None:
    """Send from the hub's offset, at most ``upload_window`` chunks unacknowledged."""
    total = source.size
    offset = int(ready.get("offset", 0))
    chunk = max(1, int(ready.get("chunk_size", 256 * 1024)))
    acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client._uploads[upload_id] = acks
    try:
        sent = acked = offset
        if on_progress is not None:
            call_safely(on_progress, acked, total)
        while acked < total:
            while sent < total and sent - acked < chunk * client.upload_window:
                data = await source.read(sent, chunk)
                if not data:
                    raise Disconnected(f"{source.name} ended at byte {sent} of {total}")
                ws = client._ws
                if ws is None or not client._ready.is_set():
                    raise Disconnected("connection lost during the upload")
                try:
                    await ws.send(data)
                except ConnectionClosed:
                    raise Disconnected("connection lost during the upload") from None
                sent += len(data)
            try:
                frame = await asyncio.wait_for(acks.get(), client.request_timeout)
            except TimeoutError:
                raise Disconnected(f"no upload.ack within {client.request_timeout}s") from None
            if frame.get("type") == "error":
                raise error_from_wire(frame)
            if frame.get("type") == "disconnected":
                raise Disconnected("connection lost during the upload")
            acked = max(acked, int(frame.get("offset", acked)))
            if on_progress is not None:
                call_safely(on_progress, acked, total)
    finally:
        client._uploads.pop(upload_id, None)


async def upload_file(
    url: str,
    path: str | os.PathLike[str],
    *,
    job: str | None = None,
    args: dict[str, Any] | None = None,
    on_bytes: Callable[[int, int], Any] | None = None,
    on_event: OnEvent | None = None,
    window: int = 4,
    **client_options: Any,
) -> dict[str, Any]:
    """Upload ``path`` over one connection (streamed from disk), then follow its job.

    Up to ``window`` chunks are in flight; ``on_bytes(acked, total)`` reports
    progress; a drop during the upload resumes from the hub's offset. Returns
    ``upload.complete`` when no ``job`` is named, else the job's final event
    (``on_event`` gets ``upload.complete`` and every job frame).
    ``client_options`` go to :class:`~wirehub.client.HubClient`.
    """
    from wirehub.client.connection import HubClient
    from wirehub.client.jobs import follow_job

    client_options.setdefault("max_attempts", MAX_RESUMES)
    async with HubClient(url, upload_window=window, **client_options) as client:
        complete = await client.upload(path, job=job, args=args, on_progress=on_bytes)
        if on_event is not None:
            on_event(complete)
        if not complete.get("job_id"):
            return complete
        return await follow_job(client, str(complete["job_id"]), on_event)

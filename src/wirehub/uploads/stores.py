"""Where upload bytes live: a spool directory (local, or shared with workers).

Layout under ``directory``::

    partial/<upload_id>.part   bytes received so far
    partial/<upload_id>.json   what was announced (name, size, sha256, job, args)
    complete/<upload_id>/<name>  a verified upload, handed to a job by path

Everything needed to resume is on disk, so an upload survives a hub restart
and, with ``shared=True`` on a directory every hub and worker mounts, may be
resumed on another hub node; workers receive the path, never the bytes.
Methods are blocking file I/O: the hub calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["SpoolStore", "default_spool_dir"]

logger = logging.getLogger("wirehub.uploads")

_READ_BLOCK = 1024 * 1024


def default_spool_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"wirehub-uploads-{os.getuid()}"


class SpoolStore:
    """Partial and complete uploads as files; expiry by modification time."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        expire_after: float = 3600.0,
        keep_after: float = 3600.0,
        shared: bool = False,
    ) -> None:
        self.directory = Path(directory) if directory else default_spool_dir()
        self.expire_after = expire_after
        self.keep_after = keep_after
        self.shared = shared
        self.partial = self.directory / "partial"
        self.complete_dir = self.directory / "complete"

    def prepare(self) -> None:
        self.partial.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.complete_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def writable(self) -> bool:
        return os.access(self.partial, os.W_OK) and os.access(self.complete_dir, os.W_OK)

    def _part(self, upload_id: str) -> Path:
        return self.partial / f"{upload_id}.part"

    def _meta(self, upload_id: str) -> Path:
        return self.partial / f"{upload_id}.json"

    # -- partial uploads ---------------------------------------------------------

    def create(self, meta: dict[str, Any]) -> None:
        upload_id = meta["upload_id"]
        self._part(upload_id).touch(mode=0o600)
        tmp = self._meta(upload_id).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(self._meta(upload_id))

    def load(self, upload_id: str) -> tuple[dict[str, Any], int, Any] | None:
        """Meta, stored length and a hasher fed with the stored bytes; None if unknown."""
        try:
            meta = json.loads(self._meta(upload_id).read_text())
        except (FileNotFoundError, ValueError):
            return None
        hasher = hashlib.sha256()
        length = 0
        try:
            with self._part(upload_id).open("rb") as f:
                while block := f.read(_READ_BLOCK):
                    hasher.update(block)
                    length += len(block)
        except FileNotFoundError:
            return None
        return meta, length, hasher

    def write(self, upload_id: str, offset: int, data: bytes, hasher: Any) -> None:
        """Write ``data`` at ``offset`` and feed it to ``hasher`` (both off the loop)."""
        with self._part(upload_id).open("r+b") as f:
            f.seek(offset)
            f.write(data)
            f.truncate()
        hasher.update(data)

    def finish(self, upload_id: str, name: str) -> Path:
        """Move a verified upload to ``complete/``; returns its path."""
        target_dir = self.complete_dir / upload_id
        target_dir.mkdir(exist_ok=True, mode=0o700)
        target = target_dir / name
        part = self._part(upload_id)
        if self.shared:
            with part.open("rb") as f:
                os.fsync(f.fileno())
        part.replace(target)
        self._meta(upload_id).unlink(missing_ok=True)
        return target

    def discard(self, upload_id: str) -> None:
        self._part(upload_id).unlink(missing_ok=True)
        self._meta(upload_id).unlink(missing_ok=True)

    # -- expiry ----------------------------------------------------------------

    def expire(self, now: float | None = None) -> int:
        """Delete unfinished uploads idle ``expire_after`` s, finished ones past ``keep_after``."""
        now = time.time() if now is None else now
        removed = 0
        for path in list(self.partial.glob("*.part")):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > self.expire_after:
                    self.discard(path.stem)
                    removed += 1
        for path in list(self.complete_dir.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > self.keep_after:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
        if removed:
            logger.info("expired %d uploads in %s", removed, self.directory)
        return removed

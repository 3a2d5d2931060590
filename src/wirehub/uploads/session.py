"""Upload state without I/O: what was announced, what arrived, and whether it checks out.

The WebSocket adapter feeds it frames; a store writes the bytes. Keeping the
rules here (limits, offsets, size and SHA-256 checks, resume) lets the unit
tests cover every bad input without a socket or a file::

    request = parse_start(frame, max_size=...)
    session = UploadSession.new(request, chunk_size=...)
    session.check_chunk(len(chunk))   # raises before anything is written
    ...store writes chunk at session.offset...
    session.advance(chunk)            # offset and running hash
    session.finish()                  # raises if short or the digest differs
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from wirehub.errors import BadRequest, TooLarge

__all__ = [
    "MAX_CHUNK",
    "StartRequest",
    "UploadSession",
    "new_upload_id",
    "parse_start",
]

#: Chunks are at most 1 MiB, whatever the configuration says.
MAX_CHUNK = 1024 * 1024

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_BAD_NAME_RE = re.compile(r"[/\\\x00-\x1f\x7f]")


def new_upload_id() -> str:
    """128 random bits: knowing an upload id is what allows resuming it."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class StartRequest:
    """A validated ``upload.start`` frame."""

    name: str
    size: int
    sha256: str
    job: str | None = None
    args: dict[str, Any] | None = None
    upload_id: str | None = None


def parse_start(frame: dict[str, Any], *, max_size: int) -> StartRequest:
    """Validate ``upload.start``; TooLarge for a size over ``max_size`` (before any byte)."""
    name = frame.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise BadRequest("field 'name' must be a file name of 1-255 characters")
    if _BAD_NAME_RE.search(name) or name in (".", ".."):
        raise BadRequest("field 'name' must be a plain file name (no path, no control characters)")
    size = frame.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest("field 'size' must be a non-negative integer (bytes)")
    if size > max_size:
        raise TooLarge(
            f"upload of {size} bytes exceeds the limit of {max_size} bytes", limit=max_size
        )
    sha256 = frame.get("sha256")
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256.lower()):
        raise BadRequest("field 'sha256' must be the file's SHA-256 as 64 hex digits")
    job = frame.get("job")
    if job is not None and (not isinstance(job, str) or not job):
        raise BadRequest("field 'job' must be a job name")
    args = frame.get("args")
    if args is not None and not isinstance(args, dict):
        raise BadRequest("field 'args' must be an object")
    upload_id = frame.get("upload_id")
    if upload_id is not None and (
        not isinstance(upload_id, str) or not _UPLOAD_ID_RE.match(upload_id)
    ):
        raise BadRequest("field 'upload_id' must be an id given by 'upload.ready'")
    return StartRequest(name, size, sha256.lower(), job, args, upload_id)


@dataclass
class UploadSession:
    """One upload's progress: bytes received so far and their running SHA-256."""

    upload_id: str
    name: str
    size: int
    sha256: str
    chunk_size: int
    job: str | None = None
    args: dict[str, Any] | None = None
    offset: int = 0
    finished: bool = False
    updated_at: float = field(default_factory=time.monotonic)
    _hasher: Any = field(default_factory=hashlib.sha256, repr=False)

    @classmethod
    def new(
        cls, request: StartRequest, *, chunk_size: int, upload_id: str | None = None
    ) -> UploadSession:
        return cls(
            upload_id=upload_id or new_upload_id(),
            name=request.name,
            size=request.size,
            sha256=request.sha256,
            chunk_size=min(chunk_size, MAX_CHUNK),
            job=request.job,
            args=request.args,
        )

    def resume(self, offset: int, hasher: Any) -> None:
        """Restore after a restart: ``hasher`` has digested the first ``offset`` bytes."""
        if not 0 <= offset <= self.size:
            raise BadRequest(f"stored upload has {offset} bytes, more than announced {self.size}")
        self.offset = offset
        self._hasher = hasher

    def matches(self, request: StartRequest) -> bool:
        """A resume must announce the same file."""
        return (request.name, request.size, request.sha256) == (self.name, self.size, self.sha256)

    @property
    def remaining(self) -> int:
        return self.size - self.offset

    def check_chunk(self, length: int) -> None:
        """Raise before writing if this chunk cannot be accepted."""
        if self.finished:
            raise BadRequest(
                f"upload '{self.upload_id}' is already complete", upload_id=self.upload_id
            )
        if length == 0:
            raise BadRequest("empty binary frame", upload_id=self.upload_id)
        if length > self.chunk_size:
            raise TooLarge(
                f"chunk of {length} bytes exceeds the chunk size of {self.chunk_size}",
                upload_id=self.upload_id,
                limit=self.chunk_size,
            )
        if length > self.remaining:
            raise TooLarge(
                f"chunk of {length} bytes goes past the announced size: {self.offset} of "
                f"{self.size} bytes received, {self.remaining} left",
                upload_id=self.upload_id,
                offset=self.offset,
            )

    @property
    def hasher(self) -> Any:
        """The running SHA-256 (a store may feed it off the event loop)."""
        return self._hasher

    def advance(self, chunk: bytes, *, hashed: bool = False) -> int:
        """Account for a written chunk (already fed to :attr:`hasher` if ``hashed``)."""
        if not hashed:
            self._hasher.update(chunk)
        self.offset += len(chunk)
        self.updated_at = time.monotonic()
        return self.offset

    def finish(self) -> None:
        """Raise BadRequest unless every byte arrived and the digest matches."""
        if self.offset < self.size:
            raise BadRequest(
                f"upload incomplete: {self.offset} of {self.size} bytes received",
                upload_id=self.upload_id,
                offset=self.offset,
            )
        digest = self._hasher.hexdigest()
        if digest != self.sha256:
            raise BadRequest(
                f"checksum mismatch: announced sha256 {self.sha256}, received {digest}; "
                "the upload was discarded",
                upload_id=self.upload_id,
            )
        self.finished = True

    def meta(self) -> dict[str, Any]:
        """What the store keeps beside the partial file (to resume after a restart)."""
        return {
            "upload_id": self.upload_id,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "job": self.job,
            "args": self.args,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> UploadSession:
        return cls(
            upload_id=meta["upload_id"],
            name=meta["name"],
            size=meta["size"],
            sha256=meta["sha256"],
            chunk_size=meta["chunk_size"],
            job=meta.get("job"),
            args=meta.get("args"),
        )

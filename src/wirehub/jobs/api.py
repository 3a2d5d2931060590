"""The job API every runner shares: ``@job``, :class:`JobContext`, job records and states.

A job is a sync or async function ``fn(ctx, **args)`` registered by name::

    from wirehub.jobs import job

    @job(name="resize", timeout=60, retries=1)
    async def resize(ctx, width: int, height: int = 100) -> dict:
        await ctx.aprogress(0.5, "halfway")
        await ctx.aoutput({"partial": 1})  # waits while the hub is behind
        if ctx.cancelled:
            return {}
        return {"w": width, "h": height}

Arguments are validated from the signature (a pydantic model built once per
job), so a caller gets a precise ``bad_request`` before anything is queued.
The runner (:mod:`wirehub.jobs.local` or :mod:`wirehub.jobs.celery`) decides
where the function runs; this module knows nothing of either.
"""

from __future__ import annotations

import builtins
import enum
import importlib
import inspect
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from wirehub.errors import BadRequest, NotFound

__all__ = [
    "REGISTRY",
    "TERMINAL",
    "AsyncEmit",
    "Emit",
    "EventSink",
    "JobContext",
    "JobRecord",
    "JobRunner",
    "JobSpec",
    "JobState",
    "UploadRef",
    "get_spec",
    "import_job_modules",
    "job",
    "new_job_id",
    "python_args",
    "validate_args",
]


class JobState(enum.StrEnum):
    """Where a job is; the last four are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})


@dataclass(frozen=True)
class UploadRef:
    """A finished upload handed to a job: a file reference, never the bytes."""

    upload_id: str
    name: str
    path: str
    size: int
    sha256: str

    def open(self) -> Any:
        """Open the uploaded file for reading (binary)."""
        return open(self.path, "rb")


@dataclass
class JobSpec:
    """One registered job: the function, its limits and its argument model."""

    name: str
    fn: Callable[..., Any]
    timeout: float | None
    retries: int
    cpu: bool
    model: type[BaseModel]
    is_async: bool

    @property
    def module(self) -> str:
        return self.fn.__module__

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timeout": self.timeout,
            "retries": self.retries,
            "cpu": self.cpu,
            "kind": "async" if self.is_async else ("process" if self.cpu else "thread"),
            "args_schema": self.model.model_json_schema(),
        }


#: Every job defined in this process, by name.
REGISTRY: dict[str, JobSpec] = {}


def _model_from_signature(name: str, fn: Callable[..., Any]) -> type[BaseModel]:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise TypeError(f"job '{name}': the function must take the context as first argument")
    fields: dict[str, Any] = {}
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"job '{name}': *args / **kwargs are not supported")
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{name}_args", __config__=config, **fields)


def job(
    name: str | None = None,
    *,
    timeout: float | None = None,
    retries: int = 0,
    cpu: bool = False,
    args_model: type[BaseModel] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, **args)`` as a job.

    ``timeout`` (seconds) ends the job as ``timed_out``; ``retries`` re-runs it
    after an exception or a lost worker (jobs must be idempotent); ``cpu=True``
    runs a sync job in its own process (embedded runner). ``args_model``
    replaces the model built from the signature.
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        job_name = name or fn.__name__
        is_async = inspect.iscoroutinefunction(fn)
        if cpu and is_async:
            raise TypeError(f"job '{job_name}': cpu=True jobs must be plain functions")
        model = args_model or _model_from_signature(job_name, fn)
        REGISTRY[job_name] = JobSpec(job_name, fn, timeout, retries, cpu, model, is_async)
        return fn

    return register


def get_spec(name: str) -> JobSpec:
    spec = REGISTRY.get(name)
    if spec is None:
        raise NotFound(f"unknown job '{name}'", job=name)
    return spec


def import_job_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import the configured job modules so their ``@job`` decorators run."""
    for module in modules:
        importlib.import_module(module)


def validate_args(spec: JobSpec, args: Any) -> dict[str, Any]:
    """Check ``args`` against the job's model; BadRequest lists each bad field.

    Returns the validated arguments in JSON form, which is what travels to
    the runner (a worker validates again into Python types).
    """
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"job '{spec.name}': 'args' must be an object")
    try:
        model = spec.model.model_validate(args)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(args)", "message": e["msg"]}
            for e in exc.errors()
        ]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise BadRequest(
            f"invalid arguments for job '{spec.name}': {text}", errors=errors
        ) from None
    return model.model_dump(mode="json")


def python_args(spec: JobSpec, args: dict[str, Any]) -> dict[str, Any]:
    """The validated arguments as Python values (e.g. ``datetime``), for the call."""
    model = spec.model.model_validate(args)
    return {name: getattr(model, name) for name in type(model).model_fields}


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class JobRecord:
    """What ``GET /api/jobs/{id}`` shows; runners keep one per job."""

    job_id: str
    job: str
    args: dict[str, Any]
    state: str = JobState.QUEUED
    progress: float = 0.0
    message: str | None = None
    result: Any = None
    error: dict[str, str] | None = None
    attempts: int = 0
    client_id: str | None = None
    upload: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None

    @property
    def done(self) -> bool:
        """The job is in a final state: nothing about it changes any more."""
        return self.state in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-ready dict (the body of ``GET /api/jobs/{id}``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """The record back from :meth:`to_dict`; unknown keys (a newer hub's) are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class EventSink(Protocol):
    """Where a runner puts job events: ``{"type": "job.progress", "job_id": ..., ...}``.

    Implemented by :class:`wirehub.jobs.buffer.EventBuffer` (bounded per job);
    :meth:`put` is for lifecycle events on the loop (never blocks), the others
    are how outputs and progress wait for room.
    """

    def put(
        self,
        event: dict[str, Any],
        size: int = ...,
        items: int = ...,
        *,
        on_accept: Callable[[dict[str, Any]], None] | None = ...,
    ) -> bool: ...

    def put_blocking(
        self,
        event: dict[str, Any],
        size: int,
        items: int = ...,
        *,
        on_accept: Callable[[dict[str, Any]], None] | None = ...,
    ) -> bool: ...

    def offer(
        self,
        event: dict[str, Any],
        size: int,
        items: int = ...,
        *,
        slack: int = ...,
        on_accept: Callable[[dict[str, Any]], None] | None = ...,
    ) -> bool: ...

    async def aput(
        self,
        event: dict[str, Any],
        size: int,
        items: int = ...,
        *,
        on_accept: Callable[[dict[str, Any]], None] | None = ...,
    ) -> bool: ...


#: ``emit(kind, fields)``: hand one event to the runner (may block when the hub is behind).
Emit = Callable[[str, dict[str, Any]], None]
#: ``await aemit(kind, fields)``: the same from a coroutine, waiting for room instead.
AsyncEmit = Callable[[str, dict[str, Any]], Awaitable[None]]


class _Flag(Protocol):
    def is_set(self) -> bool: ...


class JobContext:
    """What a running job sees. Thread-safe; usable from a worker process.

    ``progress`` and ``output`` are pushed live to the submitter and to the
    job's room ``$job:<id>``. Progress events closer than ``min_interval``
    seconds are coalesced (the last one before the result always goes out).

    Events wait in a bounded buffer until the hub delivers them, so a job
    cannot outrun its watchers: from a thread or a process ``output`` and
    ``progress`` *block* while the buffer is full. An async job on the hub's
    loop must never block it: it should ``await ctx.aoutput(...)`` /
    ``await ctx.aprogress(...)``, which wait for room; there a plain ``output``
    queues without waiting up to a hard bound, past which it raises
    :class:`wirehub.jobs.buffer.BufferFull`.
    """

    min_interval = 0.02

    def __init__(
        self,
        job_id: str,
        name: str,
        args: dict[str, Any],
        *,
        emit: Emit,
        aemit: AsyncEmit | None = None,
        cancel_flag: _Flag | None = None,
        upload: UploadRef | None = None,
        attempt: int = 1,
    ) -> None:
        self.job_id = job_id
        self.name = name
        self.args = args
        self.attempt = attempt
        self.upload = upload
        self._emit = emit
        self._aemit = aemit
        self._cancel = cancel_flag if cancel_flag is not None else threading.Event()
        self._last_progress = 0.0
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested (or the timeout hit): return soon."""
        return self._cancel.is_set()

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1] with an optional human message."""
        fields = self._progress_fields(fraction, message)
        if fields is not None:
            self._emit("job.progress", fields)

    def output(self, data: Any) -> None:
        """Stream a partial result (a token, a row…) to everyone watching.

        ``data`` must be JSON-serialisable (``TypeError`` otherwise). Blocks
        while the job's event buffer is full (see the class docstring).
        """
        self._emit("job.output", {"data": data})

    async def aprogress(self, fraction: float, message: str | None = None) -> None:
        """:meth:`progress` for async jobs: waits for room instead of blocking."""
        fields = self._progress_fields(fraction, message)
        if fields is not None:
            await self._aemit_or_emit("job.progress", fields)

    async def aoutput(self, data: Any) -> None:
        """:meth:`output` for async jobs: waits for room instead of blocking the loop."""
        await self._aemit_or_emit("job.output", {"data": data})

    async def _aemit_or_emit(self, kind: str, fields: dict[str, Any]) -> None:
        # Without an async form (a worker runs the job on a loop of its own in
        # a thread), blocking that private loop is what waiting means.
        if self._aemit is None:
            self._emit(kind, fields)
        else:
            await self._aemit(kind, fields)

    def _progress_fields(self, fraction: float, message: str | None) -> dict[str, Any] | None:
        fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        with self._lock:
            if fraction < 1.0 and now - self._last_progress < self.min_interval:
                return None
            self._last_progress = now
        return {"progress": fraction, "message": message}


class JobRunner(Protocol):
    """Where jobs run. Implementations: ``local`` (in-process) and ``celery``.

    Runners put every event into ``sink`` (:class:`EventSink`): ``job.queued``,
    ``job.running``, ``job.progress``, ``job.output``, ``job.result``,
    ``job.failed``, ``job.cancelled``; each carries ``job_id`` and
    ``client_id`` (the submitter, or None). Outputs and progress wait for room
    (the producer slows down); lifecycle events never wait, and a terminal
    one is never dropped nor put before the outputs emitted ahead of it.
    """

    name: str

    async def start(self, sink: EventSink) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, record: JobRecord) -> None: ...

    async def cancel(self, job_id: str) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def list(self, state: str | None = None, limit: int = 100) -> list[JobRecord]: ...

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]: ...

    def readiness(self) -> dict[str, bool]: ...

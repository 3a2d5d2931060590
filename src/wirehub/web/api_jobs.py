"""REST API for jobs: ``/api/jobs`` (submit, list, status, events, cancel)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wirehub.errors import BadRequest, NotFound, WirehubError
from wirehub.jobs.api import REGISTRY, JobState
from wirehub.web.errors import http_error

if TYPE_CHECKING:
    from wirehub.hub import Hub
    from wirehub.jobs.api import JobRecord

__all__ = ["build_jobs_router"]


class SubmitBody(BaseModel):
    job: str = Field(..., description="A registered job name", max_length=200)
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments")
    client_id: str | None = Field(
        None, description="A connected client that should receive the job's events"
    )


class Submitted(BaseModel):
    job_id: str
    job: str
    state: str


class JobInfo(BaseModel):
    job_id: str
    job: str
    args: dict[str, Any]
    state: str
    progress: float
    message: str | None
    result: Any = None
    error: dict[str, str] | None
    attempts: int
    client_id: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None = Field(None, description="Seconds from start to finish")
    worker: str | None = None


def _info(record: JobRecord) -> JobInfo:
    duration = None
    if record.started_at is not None and record.finished_at is not None:
        duration = round(record.finished_at - record.started_at, 6)
    data = record.to_dict()
    data.pop("upload", None)
    return JobInfo(**data, duration=duration)


def build_jobs_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/api/jobs", tags=["jobs"])
    jobs = hub.jobs

    @router.get("/definitions")
    async def definitions() -> list[dict[str, Any]]:
        """Registered jobs with their argument schema."""
        return [spec.describe() for spec in REGISTRY.values()]

    @router.post("", status_code=202)
    async def submit(body: SubmitBody) -> Submitted:
        """Queue a job. Unknown job: 404; invalid arguments: 422 with each bad field."""
        try:
            record = jobs.prepare(body.job, body.args, client_id=body.client_id)
            await jobs.enqueue(record)
        except BadRequest as exc:
            raise http_error(_unprocessable(exc)) from None
        except WirehubError as exc:
            raise http_error(exc) from None
        return Submitted(job_id=record.job_id, job=record.job, state=str(JobState.QUEUED))

    @router.get("")
    async def list_jobs(
        state: JobState | None = Query(None, description="Only jobs in this state"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[JobInfo]:
        return [_info(r) for r in await jobs.list(str(state) if state else None, limit)]

    @router.get("/{job_id}")
    async def get_job(job_id: str) -> JobInfo:
        record = await jobs.get(job_id)
        if record is None:
            raise http_error(NotFound(f"unknown job id '{job_id}'", job_id=job_id))
        return _info(record)

    @router.get("/{job_id}/events")
    async def job_events(job_id: str) -> list[dict[str, Any]]:
        """The job's event log (progress, output, result…), oldest first."""
        try:
            return await jobs.events(job_id)
        except WirehubError as exc:
            raise http_error(exc) from None

    @router.delete("/{job_id}")
    async def cancel(job_id: str) -> JobInfo:
        """Cancel: a queued job is removed; a running one is asked to stop, then stopped."""
        try:
            record = await jobs.cancel(job_id)
        except WirehubError as exc:
            raise http_error(exc) from None
        return _info(record)

    return router


class _Unprocessable(BadRequest):
    http_status = 422


def _unprocessable(exc: BadRequest) -> WirehubError:
    return _Unprocessable(exc.message, **exc.fields)

"""Background jobs: define with ``@job``, run embedded or on Celery workers, watch live."""

from wirehub.jobs.api import JobContext, JobRecord, JobState, UploadRef, job
from wirehub.jobs.buffer import BufferFull
from wirehub.jobs.component import Jobs

__all__ = ["BufferFull", "JobContext", "JobRecord", "JobState", "Jobs", "UploadRef", "job"]

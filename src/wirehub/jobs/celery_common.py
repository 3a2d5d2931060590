"""What both sides of the Celery runner share: key names, the transition, the record codec.

Every Redis key and channel of the runner starts with the configured ``[redis]
prefix`` (``wirehub`` by default), so two hubs sharing one Redis with two
prefixes never see each other's jobs; Celery's own broker keys get
``<prefix>:celery:`` (kombu's ``global_keyprefix``) for the same reason.

=================================  ======  ==========================================
name (``P`` = prefix)              type    holds
=================================  ======  ==========================================
``P:job:<id>``                     hash    the job record (JSON fields)
``P:job:<id>:events``              list    the event log, last MAX_EVENTS_PER_JOB
``P:job:<id>:cancel``              string  set when a cancel was asked
``P:job:<id>:lease``               string  the running worker's lease (PX)
``P:job:<id>:credit:<attempt>``    list    one entry per output batch a hub took in
``P:jobs``                         zset    job ids by creation time
``P:jobs:running``                 set     ids of running jobs
``P:jobs:events``                  channel every event, worker/hub → every hub
=================================  ======  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from wirehub.jobs.api import JobRecord, JobState

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "CREDIT_WINDOW",
    "MAX_EVENTS_PER_JOB",
    "TASK_NAME",
    "TRANSITION",
    "JobKeys",
    "decode_record",
    "dump",
    "encode_record",
    "make_celery",
    "terminal_event",
    "transition_args",
]

TASK_NAME = "wirehub.run_job"
#: Events kept per job for ``GET /api/jobs/{id}/events`` (one per output).
MAX_EVENTS_PER_JOB = 1000
#: Output batches a worker publishes ahead of the hubs' acknowledgements.
CREDIT_WINDOW = 4


@dataclass(frozen=True, slots=True)
class JobKeys:
    """Key and channel names of the Celery runner under one ``prefix``."""

    prefix: str = "wirehub"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:jobs:events"

    @property
    def index(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def running(self) -> str:
        return f"{self.prefix}:jobs:running"

    @property
    def celery(self) -> str:
        """kombu's ``global_keyprefix``: Celery's queues and bookkeeping."""
        return f"{self.prefix}:celery:"

    def record(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def lease(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:lease"

    def credit(self, job_id: str, attempt: int) -> str:
        return f"{self.prefix}:job:{job_id}:credit:{attempt}"


#: KEYS: record, running set. ARGV: allowed states ("a,b"), ttl seconds (0: keep),
#: job_id, new state, then field/value pairs (values are JSON). Returns 1 if applied.
TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if state == '"' .. s .. '"' then ok = true end
end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'state', '"' .. ARGV[4] .. '"')
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if ARGV[4] == 'running' then
  redis.call('SADD', KEYS[2], ARGV[3])
else
  redis.call('SREM', KEYS[2], ARGV[3])
end
return 1
"""


def dump(value: Any) -> bytes:
    return orjson.dumps(value)


def encode_record(record: JobRecord) -> dict[str, bytes]:
    return {key: dump(value) for key, value in record.to_dict().items()}


def decode_record(raw: dict[Any, Any]) -> JobRecord | None:
    if not raw:
        return None
    data = {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()}
    return JobRecord.from_dict(data)


def transition_args(
    keys: JobKeys,
    job_id: str,
    allowed: tuple[str, ...],
    state: str,
    ttl: float,
    fields: dict[str, Any],
) -> tuple[list[str], list[Any]]:
    args: list[Any] = [",".join(allowed), int(ttl), job_id, state]
    for key, value in fields.items():
        args += [key, dump(value)]
    return [keys.record(job_id), keys.running], args


def terminal_event(job_id: str, state: str, result: Any, error: Any) -> dict[str, Any]:
    if state == JobState.SUCCEEDED:
        return {"type": "job.result", "job_id": job_id, "result": result}
    if state == JobState.CANCELLED:
        return {"type": "job.cancelled", "job_id": job_id, "state": state, "error": error}
    return {"type": "job.failed", "job_id": job_id, "error": error, "state": state}


def make_celery(
    redis_url: str, *, queue: str, visibility_timeout: float, keys: JobKeys | None = None
) -> Celery:
    """A Celery app on the Redis broker with the settings safe for long jobs."""
    from celery import Celery

    keys = keys or JobKeys()
    app = Celery("wirehub", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": int(visibility_timeout),
            "global_keyprefix": keys.celery,
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=queue,
        task_ignore_result=True,  # wirehub keeps its own state: no PENDING-for-unknown
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    return app

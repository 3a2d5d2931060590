"""``cpu=True`` jobs: the child process and the hub-side relay of its pipe.

The child runs the function with a :class:`JobContext` whose events go up a
one-way pipe **in batches** (:class:`PipeEmitter`): one pipe message per up to
:data:`PIPE_BATCH` outputs, sent when the batch is full, when another kind of
event comes (so order is kept), or at most :data:`PIPE_INTERVAL` seconds after
its first output (a small thread in the child). A pipe message costs the hub a
read and an unpickle: one per output would cost more than the output itself.

Backpressure: the hub's relay thread (:func:`relay`) puts every event into the
hub's bounded buffer and blocks while it is full, so it stops reading; the
pipe fills, and the child blocks in ``send`` — at most one batch waits in the
child, so a flooding job is held at the pipe's and the buffer's bounds.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import threading
from collections.abc import Callable
from typing import Any

from wirehub.jobs.api import JobContext, UploadRef, get_spec, import_job_modules, python_args
from wirehub.jobs.buffer import OUTPUT, event_size

__all__ = ["PIPE_BATCH", "PIPE_INTERVAL", "PipeEmitter", "mp_context", "process_main", "relay"]

#: Outputs per pipe message at most...
PIPE_BATCH = 256
#: ...and the longest a lone output waits in the child for company, in seconds.
PIPE_INTERVAL = 0.002

_MP: Any = None


def mp_context() -> Any:
    """Forkserver: children fork from a clean, single-threaded server process."""
    global _MP
    if _MP is None:
        _MP = multiprocessing.get_context("forkserver")
    return _MP


class PipeEmitter:
    """In the child: ``emit(kind, fields)`` batching events into ``("events", [...])`` messages."""

    def __init__(
        self,
        conn: multiprocessing.connection.Connection,
        *,
        batch: int = PIPE_BATCH,
        interval: float = PIPE_INTERVAL,
    ) -> None:
        self._conn = conn
        self._batch = batch
        self._interval = interval
        # One lock for the batch and the pipe: a send blocked by a full pipe
        # blocks the next emit too, so at most one batch waits here.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[str, dict[str, Any], int]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wirehub-pipe", daemon=True)
        self._thread.start()

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        size = event_size(kind, fields)  # also refuses non-JSON data inside the job
        with self._lock:
            self._pending.append((kind, fields, size))
            if kind != OUTPUT or len(self._pending) >= self._batch:
                self._flush()
            elif len(self._pending) == 1:
                self._wake.notify()

    def close(self) -> None:
        """Send what is pending (before the result) and stop the timer thread."""
        with self._lock:
            self._closed = True
            if self._pending:
                self._flush()
            self._wake.notify()
        self._thread.join(1.0)

    def _flush(self) -> None:  # lock held
        batch, self._pending = self._pending, []
        self._conn.send(("events", batch))

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._pending:
                    self._wake.wait()
                    continue
                self._wake.wait(self._interval)  # let the batch grow a little
                if self._pending and not self._closed:
                    self._flush()


def relay(
    reader: multiprocessing.connection.Connection,
    proc: Any,
    emit: Callable[[str, dict[str, Any], int], Any],
) -> tuple[str, Any]:
    """Hub thread: relay a job process's events until it ends.

    Returns ``("result", value)``, ``("error", (type name, message))`` or
    ``("lost", exit code)`` when the pipe closed without a word (killed).
    ``emit`` blocks while the hub's buffer is full; reading stops meanwhile.
    """
    try:
        while True:
            try:
                message = reader.recv()
            except EOFError:
                proc.join(5)
                return "lost", proc.exitcode
            kind = message[0]
            if kind == "events":
                for event_kind, fields, size in message[1]:
                    emit(event_kind, fields, size)
            elif kind == "result":
                return "result", message[1]
            else:
                return "error", (message[1], message[2])
    finally:
        reader.close()
        proc.join(5)


def process_main(
    module: str,
    name: str,
    job_id: str,
    args: dict[str, Any],
    upload: dict[str, Any] | None,
    *,
    attempt: int,
    conn: multiprocessing.connection.Connection,
    flag: Any,
) -> None:
    """Entry point of a ``cpu=True`` job's process."""
    emit: PipeEmitter | None = None
    try:
        import_job_modules([module])
        spec = get_spec(name)
        emit = PipeEmitter(conn)
        ctx = JobContext(
            job_id,
            name,
            args,
            emit=emit,
            cancel_flag=flag,
            upload=UploadRef(**upload) if upload else None,
            attempt=attempt,
        )
        result = spec.fn(ctx, **python_args(spec, args))
        emit.close()
        conn.send(("result", result))
    except BaseException as exc:  # report everything, even SystemExit
        if emit is not None:
            emit.close()
        conn.send(("error", type(exc).__name__, str(exc) or type(exc).__name__))
    finally:
        conn.close()

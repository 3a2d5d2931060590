"""A bounded hand-off of job events, from where a job runs to whoever delivers them.

A job can call ``ctx.output`` far faster than anyone can deliver it (300 000
times in a second is easy). Every event therefore waits in an
:class:`EventBuffer` — one FIFO per job, bounded in events and in bytes — and
the producer pays when it is full:

* a thread (a sync job, the relay of a ``cpu=True`` process, a Celery job)
  **blocks** in :meth:`EventBuffer.put_blocking` until there is room, which in
  turn backs up a process's pipe and blocks the child;
* code on the event loop **awaits** in :meth:`EventBuffer.aput` (``await
  ctx.aoutput(...)``), or is refused by :meth:`EventBuffer.offer` past a hard
  bound (a sync ``ctx.output`` from an async job must never block the loop);
* lifecycle events (queued, running, and the terminal result / failure /
  cancellation) go through :meth:`EventBuffer.put`, which never blocks and
  never refuses: they are few per job, and the terminal one must never be
  lost or overtake the outputs queued before it. It also *closes* the job's
  FIFO: whatever an abandoned job emits afterwards is dropped.

The consumer (the hub's pump, or a Celery worker's flusher thread) calls
:meth:`EventBuffer.take`, which returns the next *run* of one job, round-robin
across jobs: either one event, or consecutive ``job.output`` events up to
:data:`MAX_BATCH_ITEMS` outputs and about :data:`MAX_BATCH_BYTES` bytes, which
:func:`coalesce` turns into one ``job.output`` event with ``items``.

Thread-safe: one lock guards everything; no caller holds it while waiting.
Futures of waiting coroutines are resolved by the consumer, which must then run
on their loop (the hub's pump does).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from wirehub.errors import BufferFull

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_EVENTS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ITEMS",
    "OUTPUT",
    "SYNC_SLACK",
    "TERMINAL_EVENTS",
    "BufferFull",
    "EventBuffer",
    "coalesce",
    "event_size",
    "output_items",
]

OUTPUT = "job.output"
#: Events after which a job emits nothing more (its FIFO closes).
TERMINAL_EVENTS = frozenset({"job.result", "job.failed", "job.cancelled"})
#: Outputs waiting per job before producers block (counted one per output).
DEFAULT_MAX_EVENTS = 1024
#: Bytes of JSON waiting per job before producers block.
DEFAULT_MAX_BYTES = 1024 * 1024
#: At most this many outputs in one coalesced ``job.output`` frame...
MAX_BATCH_ITEMS = 512
#: ...and at most about this many bytes of them (a larger single output goes alone).
MAX_BATCH_BYTES = 64 * 1024
#: :meth:`EventBuffer.offer` refuses only past this multiple of the bounds.
SYNC_SLACK = 8
#: Recently finished jobs remembered so a late event for them is dropped.
_FINISHED_KEPT = 10_000
#: Size counted for an event that is not an output (progress, lifecycle).
_SMALL_EVENT = 64


def event_size(kind: str, fields: dict[str, Any]) -> int:
    """Bytes an event counts against the bound: its output's JSON, else a small constant.

    Encoding here (in the producer's thread or process) also refuses a value
    that cannot travel as JSON with a ``TypeError`` raised inside the job.
    """
    if kind == OUTPUT:
        return len(orjson.dumps(fields.get("data"))) + 1
    return _SMALL_EVENT


def output_items(event: dict[str, Any]) -> list[Any]:
    """The outputs an output event carries: ``items``, or its one ``data``."""
    items = event.get("items")
    return items if isinstance(items, list) else [event.get("data")]


def coalesce(run: list[dict[str, Any]]) -> dict[str, Any]:
    """One event from a run :meth:`EventBuffer.take` returned.

    A lone event is returned as is; consecutive outputs become one
    ``job.output`` with ``items`` (in order), or with ``data`` when the run
    holds a single output. The head event's other keys (``client_id``) stay.
    """
    head = run[0]
    if head["type"] != OUTPUT:
        return head
    if len(run) == 1 and "items" not in head:
        return head
    items: list[Any] = []
    for event in run:
        items.extend(output_items(event))
    merged = {k: v for k, v in head.items() if k not in ("data", "items")}
    if len(items) == 1:
        merged["data"] = items[0]
    else:
        merged["items"] = items
    return merged


@dataclass(slots=True)
class _Stream:
    """One job's FIFO: ``(event, bytes, outputs)`` entries and their totals."""

    job_id: str
    entries: collections.deque[tuple[dict[str, Any], int, int]] = field(
        default_factory=collections.deque
    )
    size: int = 0
    count: int = 0
    closed: bool = False
    ready: bool = False  # in the round-robin ring
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class EventBuffer:
    """Per-job bounded FIFOs of events; see the module docstring."""

    def __init__(
        self,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be >= 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._low_events = max_events // 2
        self._low_bytes = max_bytes // 2
        self._on_ready = on_ready
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # producers wait here
        self._filled = threading.Condition(self._lock)  # a consumer thread waits here
        self._streams: dict[str, _Stream] = {}
        self._ring: collections.deque[_Stream] = collections.deque()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._signalled = False
        self._closed = False
        self._thread_waiters = 0
        self._consumers_waiting = 0
        #: Times a producer had to wait (or was refused) for room; the most
        #: outputs one job ever had waiting; events dropped after their job ended.
        self.waits = 0
        self.high_water = 0
        self.dropped = 0

    def __len__(self) -> int:
        with self._lock:
            return sum(len(s.entries) for s in self._streams.values())

    @property
    def waiting(self) -> int:
        """Producers blocked or awaiting room right now."""
        with self._lock:
            return self._thread_waiters + sum(len(s.waiters) for s in self._streams.values())

    def pending(self, job_id: str) -> int:
        """Outputs (and other events) of ``job_id`` waiting for the consumer."""
        with self._lock:
            stream = self._streams.get(job_id)
            return stream.count if stream is not None else 0

    # -- producers -------------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        """The buffer as a plain sink callable (how runners reported events before)."""
        self.put(event)

    def put(
        self,
        event: dict[str, Any],
        size: int = _SMALL_EVENT,
        items: int = 1,
        *,
        on_accept: Callable[[dict[str, Any]], None] | None = None,
    ) -> bool:
        """Queue without waiting, whatever the bound (lifecycle events, from the loop).

        A terminal event closes the job's FIFO. False if the job already ended.
        """
        with self._lock:
            stream = self._stream(event["job_id"])
            if stream is None or stream.closed:
                self.dropped += 1
                return False
            self._append(stream, event, size, items)
            if on_accept is not None:
                on_accept(event)
            notify = self._signal()
        if notify:
            self._notify()
        return True

    def put_blocking(
        self,
        event: dict[str, Any],
        size: int,
        items: int = 1,
        *,
        on_accept: Callable[[dict[str, Any]], None] | None = None,
    ) -> bool:
        """From a thread: wait for room, then queue. False: dropped (the job ended).

        ``on_accept(event)`` runs under the buffer's lock once the event is
        queued, so what it records (a log line) is in the order of the events.
        """
        # The hot path of a flooding job: kept inline on purpose.
        job_id = event["job_id"]
        with self._lock:
            stream = self._streams.get(job_id) or self._stream(job_id)
            waited = False
            while True:
                if stream is None or stream.closed:
                    self.dropped += 1
                    return False
                if not stream.entries or (
                    stream.count + items <= self.max_events and stream.size + size <= self.max_bytes
                ):
                    break
                if not waited:
                    self.waits += 1
                    waited = True
                self._thread_waiters += 1
                try:
                    self._room.wait()
                finally:
                    self._thread_waiters -= 1
                # Drained meanwhile, the FIFO may have been dropped: look it up again.
                stream = self._streams.get(job_id) or self._stream(job_id)
            stream.entries.append((event, size, items))
            stream.size += size
            count = stream.count = stream.count + items
            if count > self.high_water:
                self.high_water = count
            if not stream.ready:
                stream.ready = True
                self._ring.append(stream)
            if event["type"] in TERMINAL_EVENTS:
                self._close_stream(stream)
            if on_accept is not None:
                on_accept(event)
            notify = self._signal()
        if notify:
            self._notify()
        return True

    def offer(
        self,
        event: dict[str, Any],
        size: int,
        items: int = 1,
        *,
        slack: int = 1,
        on_accept: Callable[[dict[str, Any]], None] | None = None,
    ) -> bool:
        """Queue if the FIFO is under ``slack`` times its bounds; False if it is not.

        A job that already ended drops the event and gets True (nothing to retry).
        """
        with self._lock:
            stream = self._stream(event["job_id"])
            if stream is None or stream.closed:
                self.dropped += 1
                return True
            if not self._fits(stream, size, items, slack):
                self.waits += 1
                return False
            self._append(stream, event, size, items)
            if on_accept is not None:
                on_accept(event)
            notify = self._signal()
        if notify:
            self._notify()
        return True

    async def aput(
        self,
        event: dict[str, Any],
        size: int,
        items: int = 1,
        *,
        on_accept: Callable[[dict[str, Any]], None] | None = None,
    ) -> bool:
        """On the consumer's loop: await room, then queue. False: dropped (the job ended)."""
        waited = False
        while True:
            with self._lock:
                stream = self._stream(event["job_id"])
                if stream is None or stream.closed:
                    self.dropped += 1
                    return False
                if self._fits(stream, size, items):
                    self._append(stream, event, size, items)
                    if on_accept is not None:
                        on_accept(event)
                    notify = self._signal()
                    break
                if not waited:
                    self.waits += 1
                    waited = True
                waiter = asyncio.get_running_loop().create_future()
                stream.waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                with self._lock:
                    if waiter in stream.waiters:
                        stream.waiters.remove(waiter)
        if notify:
            self._notify()
        return True

    # -- consumer --------------------------------------------------------------

    def take(
        self, max_items: int = MAX_BATCH_ITEMS, max_bytes: int = MAX_BATCH_BYTES
    ) -> list[dict[str, Any]] | None:
        """The next run of one job (round-robin), or None when nothing waits.

        A run is one event, or consecutive outputs up to ``max_items`` outputs
        and ``max_bytes`` bytes (at least one). Producers waiting for room in
        that job's FIFO are woken.
        """
        with self._lock:
            if not self._ring:
                self._signalled = False
                return None
            stream = self._ring.popleft()
            entries = stream.entries
            event, size, items = entries.popleft()
            run = [event]
            taken_size, taken_items = size, items
            if event["type"] == OUTPUT:
                while entries:
                    nxt, nsize, nitems = entries[0]
                    if nxt["type"] != OUTPUT:
                        break
                    if taken_items + nitems > max_items or taken_size + nsize > max_bytes:
                        break
                    entries.popleft()
                    run.append(nxt)
                    taken_size += nsize
                    taken_items += nitems
            stream.size -= taken_size
            stream.count -= taken_items
            if entries:
                self._ring.append(stream)
            else:
                # Empty FIFOs are not kept (a job that ended is remembered apart).
                stream.ready = False
                del self._streams[stream.job_id]
            # Hysteresis: a blocked producer resumes once half the room is free,
            # so it runs in bursts and then blocks (releasing the GIL for the
            # loop) rather than racing the consumer one event at a time.
            if stream.count <= self._low_events and stream.size <= self._low_bytes:
                self._wake_producers(stream)
            return run

    def wait_filled(self, timeout: float) -> bool:
        """A consumer *thread*: wait up to ``timeout`` for something to take."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._ring:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._consumers_waiting += 1
                try:
                    self._filled.wait(left)
                finally:
                    self._consumers_waiting -= 1
            return True

    # -- closing ---------------------------------------------------------------

    def close(self, job_id: str) -> None:
        """The job emits nothing more: drop what it sends later, release its producers.

        What is already queued is still delivered.
        """
        with self._lock:
            stream = self._streams.get(job_id)
            if stream is None:
                self._remember(job_id)
                return
            self._close_stream(stream)
            if not stream.entries:
                del self._streams[job_id]
            if self._consumers_waiting:
                self._filled.notify_all()

    def close_all(self) -> None:
        """Shutting down: every producer stops waiting (its events are dropped)."""
        with self._lock:
            self._closed = True
            for stream in list(self._streams.values()):
                self._close_stream(stream)
            self._filled.notify_all()

    # -- internals (lock held) -------------------------------------------------

    def _stream(self, job_id: str) -> _Stream | None:
        stream = self._streams.get(job_id)
        if stream is None:
            if self._closed or job_id in self._finished:
                return None
            stream = self._streams[job_id] = _Stream(job_id)
        return stream

    def _fits(self, stream: _Stream, size: int, items: int, slack: int = 1) -> bool:
        if not stream.entries:
            return True  # always room for one, however large
        return (
            stream.count + items <= self.max_events * slack
            and stream.size + size <= self.max_bytes * slack
        )

    def _append(self, stream: _Stream, event: dict[str, Any], size: int, items: int) -> None:
        stream.entries.append((event, size, items))
        stream.size += size
        stream.count += items
        if stream.count > self.high_water:
            self.high_water = stream.count
        if not stream.ready:
            stream.ready = True
            self._ring.append(stream)
        if event["type"] in TERMINAL_EVENTS:
            self._close_stream(stream)

    def _close_stream(self, stream: _Stream) -> None:
        stream.closed = True
        self._remember(stream.job_id)
        self._wake_producers(stream)

    def _remember(self, job_id: str) -> None:
        self._finished[job_id] = None
        self._finished.move_to_end(job_id)
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)

    def _wake_producers(self, stream: _Stream) -> None:
        if self._thread_waiters:
            self._room.notify_all()
        if stream.waiters:
            try:
                here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            for waiter in stream.waiters:
                loop = waiter.get_loop()
                if loop is here:
                    _resolve(waiter)
                else:
                    loop.call_soon_threadsafe(_resolve, waiter)
            stream.waiters.clear()

    def _signal(self) -> bool:
        """Something is ready: wake a waiting consumer thread; True if on_ready is due."""
        if self._consumers_waiting:
            self._filled.notify()
        if self._signalled or self._on_ready is None:
            return False
        self._signalled = True
        return True

    def _notify(self) -> None:
        assert self._on_ready is not None
        self._on_ready()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

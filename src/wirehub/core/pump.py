"""One bounded, ordered hand-off from many producers to one consumer task.

Three parts of the hub hand work to a single task that must do it in order,
without a producer ever waiting on the slow part: the jobs component
delivering job events, a supervised service publishing its state changes and
log lines, the Redis broker running its writes. Each is a :class:`Pump`:

* **bounded**: at most ``maxsize`` items wait. :meth:`Pump.offer` never
  waits and says False when full (the caller counts the drop);
  :meth:`Pump.put` awaits room. :meth:`Pump.push` is never refused and not
  counted against the bound: for the few items that must not be lost (a
  service's state change) and cannot be many.
* **ordered, one consumer**: one task awaits ``handle(item)`` for each item,
  in the order they came; an exception is logged and the next item goes on.
* **fair to the loop**: when woken, the consumer drains everything there is,
  and yields to the event loop (``await asyncio.sleep(0)``) once it has run
  for ``budget`` seconds, so a flood cannot hold the loop. ``budget=math.inf``
  never yields on its own: what feeds it waits meanwhile (a service's pipe
  readers: the flood backs up into the program's pipe).
* **drained and closed cleanly**: :meth:`Pump.drain` returns once everything
  queued before the call has been handled; :meth:`Pump.close` drains (up to
  a timeout), then stops the task. What is still queued stays for the next
  :meth:`Pump.start`.

A pump can also drain a *source* that bounds itself instead of its own queue
(``take=``: a callable that returns the next item or None, and the owner
calls :meth:`Pump.wake` when it has more): the jobs' event buffer keeps per-job
bounds and thread producers of its own, and only its consumer is a pump.

Loop-only (not thread-safe): from another thread, ``loop.call_soon_threadsafe(pump.wake)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_BUDGET", "Pump"]

logger = logging.getLogger("wirehub.pump")

T = TypeVar("T")

#: Seconds the consumer runs before it yields to the event loop.
DEFAULT_BUDGET = 0.002


class Pump(Generic[T]):
    """A bounded FIFO and the one task that hands its items, in order, to ``handle``."""

    def __init__(
        self,
        handle: Callable[[T], Awaitable[object]],
        *,
        maxsize: int = 10_000,
        budget: float = DEFAULT_BUDGET,
        name: str = "wirehub-pump",
        take: Callable[[], T | None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if budget < 0:
            raise ValueError("budget must be >= 0")
        self.maxsize = maxsize
        self.budget = budget
        self.name = name
        self._handle = handle
        self._source = take
        # (item, counted against maxsize)
        self._items: collections.deque[tuple[T, bool]] = collections.deque()
        self._counted = 0
        self._wakeup = asyncio.Event()
        self._room: collections.deque[asyncio.Future[None]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        # Drain bookkeeping: items queued and handled so far (own queue), and
        # waiters for "everything queued before me handled" / "source found empty".
        self._queued = 0
        self._handled = 0
        self._drains: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._empty_waiters: list[asyncio.Future[None]] = []
        #: Items whose handler raised, and times the consumer yielded to the loop.
        self.errors = 0
        self.yields = 0

    def __len__(self) -> int:
        """Items waiting (pushed ones included; a source's are its own)."""
        return len(self._items)

    @property
    def handled(self) -> int:
        """Items done with (an error or a close cutting one short included)."""
        return self._handled

    @property
    def full(self) -> bool:
        return self._counted >= self.maxsize

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- producers -----------------------------------------------------------------

    def offer(self, item: T) -> bool:
        """Queue ``item`` if there is room; False (nothing queued) when the pump is full."""
        self._own_queue()
        if self._counted >= self.maxsize:
            return False
        self._append(item, counted=True)
        return True

    def push(self, item: T) -> None:
        """Queue ``item`` whatever the bound (and outside it): for the few that must not drop."""
        self._own_queue()
        self._append(item, counted=False)

    async def put(self, item: T) -> None:
        """Queue ``item``, first waiting for room while the pump is full."""
        self._own_queue()
        while self._counted >= self.maxsize:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Pass a wake-up we were given on to the next waiter.
                if waiter.done() and not waiter.cancelled():
                    self._wake_putter()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._room.remove(waiter)
        self._append(item, counted=True)

    def wake(self) -> None:
        """The source has items (a pump with ``take=``); harmless otherwise."""
        self._wakeup.set()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the consumer task on the running loop (no-op while it runs)."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=self.name)
        if self._items or self._source is not None:
            self._wakeup.set()

    async def drain(self) -> None:
        """Return once every item queued before this call has been handled.

        With a source: once the consumer has found it empty after this call.
        Waits while the pump is not running (bound it with a timeout).
        """
        loop = asyncio.get_running_loop()
        if self._source is not None:
            waiter = loop.create_future()
            self._empty_waiters.append(waiter)
            self._wakeup.set()
            await waiter
            return
        if self._handled >= self._queued:
            return
        waiter = loop.create_future()
        self._drains.append((self._queued, waiter))
        await waiter

    async def close(self, timeout: float = 0.0) -> bool:
        """Drain for up to ``timeout`` seconds, then stop the task; True if it drained.

        Idempotent. Items still queued stay for the next :meth:`start`.
        """
        task = self._task
        if task is None:
            return not self._items
        drained = True
        if timeout > 0 and not task.done():
            try:
                await asyncio.wait_for(self.drain(), timeout)
            except TimeoutError:
                drained = False
        if self._task is task:
            self._task = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return drained and not self._items

    # -- the consumer ----------------------------------------------------------------

    async def _run(self) -> None:
        clock = asyncio.get_running_loop().time
        wakeup = self._wakeup
        drain = self._drain_source if self._source is not None else self._drain_queue
        while True:
            await wakeup.wait()
            wakeup.clear()
            await drain(clock)

    async def _drain_queue(self, clock: Callable[[], float]) -> None:
        """One pass over the own queue: until it is empty, yielding every ``budget`` seconds."""
        items, handle = self._items, self._handle
        deadline = clock() + self.budget
        while items:
            item, counted = items.popleft()
            if counted:
                self._counted -= 1
                if self._room:
                    self._wake_putter()
            try:
                await handle(item)
            except Exception:
                self.errors += 1
                logger.exception("%s: handling %r failed", self.name, item)
            finally:
                # Done with, even when a close cut it short: drain() must not wait for it.
                self._handled += 1
                if self._drains:
                    self._settle_drains()
            if clock() >= deadline:
                self.yields += 1
                await asyncio.sleep(0)
                deadline = clock() + self.budget

    async def _drain_source(self, clock: Callable[[], float]) -> None:
        """One pass over the source: until it returns None, yielding every ``budget`` seconds."""
        assert self._source is not None
        take, handle = self._source, self._handle
        deadline = clock() + self.budget
        while (item := take()) is not None:
            try:
                await handle(item)
            except Exception:
                self.errors += 1
                logger.exception("%s: handling %r failed", self.name, item)
            finally:
                self._handled += 1
            if clock() >= deadline:
                self.yields += 1
                await asyncio.sleep(0)
                deadline = clock() + self.budget
        self._settle_empty()

    # -- internals -------------------------------------------------------------------

    def _own_queue(self) -> None:
        if self._source is not None:
            raise RuntimeError(f"{self.name} drains a source: queue into the source")

    def _append(self, item: T, *, counted: bool) -> None:
        self._items.append((item, counted))
        if counted:
            self._counted += 1
        self._queued += 1
        self._wakeup.set()

    def _wake_putter(self) -> None:
        while self._room:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _settle_drains(self) -> None:
        drains, handled = self._drains, self._handled
        while drains and drains[0][0] <= handled:
            _, waiter = drains.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _settle_empty(self) -> None:
        waiters, self._empty_waiters = self._empty_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

"""A virtual-time asyncio event loop whose ready callbacks run in a seeded order.

``VirtualLoop.time()`` is a number the loop moves itself: when no callback is ready, the
clock jumps to the earliest timer, so ``asyncio.sleep``, ``wait_for`` timeouts and every
``call_later`` take no real time at all. The callbacks that are ready together (one batch of
``_run_once``) run in an order drawn from a ``random.Random``: asyncio promises the order of
the callbacks of one registration (a future's callbacks are scheduled in order, and each
becomes a task's step only in a later batch), never an order between tasks.

Tasks and timers belong to the *owner* (a simulated node) in whose context they were made
(``OWNER``), so that a crash can cancel every task and timer of one node at once.
``HostClock`` is a node's wall and monotonic clock on the loop's time, with a skew.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import random
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypeVar, cast

from heatup_daemon.logs import _context as _log_context

T = TypeVar("T")

# Every simulated run starts at this wall time (a Monday, no daylight saving change near).
EPOCH: Final = datetime.fromisoformat("2026-03-02T09:00:00+00:00")
# A timer list this long with more than half cancelled is compacted (asyncio's own rule).
_COMPACT_AT: Final = 100


class Owner(Protocol):
    """Whoever owns tasks and timers: a simulated node."""

    dead: bool

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """``task`` was made in this owner's context."""

    def forget(self, task: asyncio.Task[Any]) -> None:
        """``task`` is done."""


OWNER: contextvars.ContextVar[Owner | None] = contextvars.ContextVar("sim_owner", default=None)


def log_fields() -> dict[str, Any]:
    """heatup's log context here (``logs.log_context``: the run, the action), read without
    the copy ``logs.context_fields`` makes: the simulation reads it at every port call."""
    return _log_context.get()


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is set: every task waits for something that never
    comes."""


class VirtualLoop(asyncio.BaseEventLoop):
    """An event loop on virtual time: no I/O, no real sleeping, a seeded order."""

    # BaseEventLoop's own state, which typeshed does not describe (``_ready`` is a list
    # here: a batch is taken whole and shuffled).
    _ready: list[asyncio.Handle]
    _scheduled: list[asyncio.TimerHandle]
    _timer_cancelled_count: int
    _stopping: bool

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._now = 0.0
        self._rng = rng
        self._ready = []
        self.batches = 0
        self.callbacks = 0
        self.on_task: Callable[[asyncio.Task[Any], Owner | None], None] | None = None

    # --- the clock ------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    def wall(self) -> datetime:
        """The true wall time (the database's, unskewed)."""
        return EPOCH + timedelta(seconds=self._now)

    # --- what BaseEventLoop leaves to its subclasses -----------------------------------------

    def _write_to_self(self) -> None:
        """One thread: a ``call_soon_threadsafe`` needs no wake-up."""

    def _process_events(self, event_list: list[Any]) -> None:
        """No I/O."""

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """``BaseEventLoop.call_soon`` without the debug mode's checks."""
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def run_in_executor(  # type: ignore[override]
        self, executor: object, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """The work a thread would do, done here and now: a thread's timing is not the
        seed's, and virtual time does not pass for it."""
        future: asyncio.Future[T] = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as exc:  # the thread's exception, as its future carries it
            future.set_exception(exc)
        return future

    # --- tasks belong to their owner ---------------------------------------------------------

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        owner = OWNER.get() if context is None else context.get(OWNER)
        if self.on_task is not None:
            self.on_task(task, owner)
        elif owner is not None:
            owner.adopt(task)
        return task

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        owner = OWNER.get() if context is None else context.get(OWNER)
        if owner is not None and owner.dead and not _asyncio_own(callback):
            handle.cancel()  # a dead process sets no timer of its own
        return handle

    def cancel_timers_of(self, owner: Owner) -> int:
        """Cancel the timers made in ``owner``'s context (a process's own timers die with
        it; the timers of asyncio's futures go with their futures, which the cancellation of
        the owner's tasks cancels)."""
        cancelled = 0
        for handle in self._scheduled:
            context: contextvars.Context | None = getattr(handle, "_context", None)
            if (
                context is not None
                and context.get(OWNER) is owner
                and not handle.cancelled()
                and not _asyncio_own(getattr(handle, "_callback", None))
            ):
                handle.cancel()
                cancelled += 1
        return cancelled

    # --- one step ----------------------------------------------------------------------------

    def _run_once(self) -> None:
        scheduled = self._scheduled
        if (scheduled and scheduled[0].cancelled()) or self._timer_cancelled_count > _COMPACT_AT:
            self._drop_cancelled()
        batch = self._ready
        if not batch and not self._stopping:
            if not scheduled:
                raise Deadlock("no callback is ready and no timer is set")
            self._now = max(self._now, scheduled[0].when())
        now = self._now
        while scheduled and scheduled[0].when() <= now:
            timer: Any = heapq.heappop(scheduled)
            timer._scheduled = False
            if timer.cancelled():
                self._timer_cancelled_count -= 1
            else:
                batch.append(timer)
        self._ready = []
        if len(batch) > 1:
            self._rng.shuffle(batch)
        self.batches += 1
        self.callbacks += len(batch)
        for handle in batch:
            if not handle.cancelled():
                handle._run()

    def _drop_cancelled(self) -> None:
        """Cancelled timers leave the heap: all of them once they are most of it, and
        always those at its head (asyncio's own rule)."""
        scheduled = self._scheduled
        if len(scheduled) > _COMPACT_AT and self._timer_cancelled_count * 2 > len(scheduled):
            kept = []
            for timer in scheduled:
                if timer.cancelled():
                    cast(Any, timer)._scheduled = False
                else:
                    kept.append(timer)
            heapq.heapify(kept)
            scheduled[:] = kept
            self._timer_cancelled_count = 0
        while scheduled and scheduled[0].cancelled():
            self._timer_cancelled_count -= 1
            cast(Any, heapq.heappop(scheduled))._scheduled = False


def _asyncio_own(callback: object) -> bool:
    """Whether a timer's callback is asyncio's own (a sleep's, a timeout's)."""
    return str(getattr(callback, "__module__", "")).startswith("asyncio")


class HostClock:
    """A node host's ``Clock`` on the loop's virtual time: the wall clock off by ``skew_s``
    (an operator or NTP may step it at any time), the monotonic clock from the host's boot."""

    def __init__(self, loop: VirtualLoop, boot_s: float = 0.0) -> None:
        self._loop = loop
        self._boot_s = boot_s
        self.skew_s = 0.0

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self._loop.time() + self.skew_s)

    def monotonic(self) -> float:
        return self._loop.time() + self._boot_s

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

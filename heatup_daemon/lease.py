"""This process's lease in the cluster, and the database's clock it reads with it.

A process that runs runs (the daemon, ``heatup warmup``) registers a node when it starts,
renews the node's lease every ``scheduler.heartbeat_s`` for
``scheduler.stale_run_s``, and releases it at a clean stop: one write per process per
interval, however many runs it has in flight. A run is alive while its node's lease is; the
fence before each gateway call (``RunRecorder.start_call``) asks that the lease outlast the
call, and asks for a renewal when it would not.

Every renewal is also a reading of the database's clock: on PostgreSQL it feeds the
``DatabaseClock`` that the whole process keeps time by, and the host's offset from it is a
metric (``heatup_clock_offset_seconds``), a warning in the log and a ``/readyz`` check above
``CLOCK_OFFSET_WARN_S``.

A renewal that finds the node's row gone (another node judged this one dead, for instance
after a network partition, and ended its runs) registers a new node: the runs already in
flight meet their fence and stop, and new runs go on under the new lease.

A daemon also marks its node alive on its host (``succession.Markers``): when it takes its
lease it ends at once the runs of a predecessor on the same host that died, instead of
leaving them to the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Protocol, TypeVar

from heatup_daemon.config.sections import SchedulerSettings
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.records import LeaseReading, Node
from heatup_daemon.stores import LeaseStore
from heatup_daemon.succession import Markers, end_dead_predecessors
from heatup_daemon.timing.clock import Clock, DatabaseClock

log = logging.getLogger(__name__)

R = TypeVar("R", LeaseReading, LeaseReading | None)

# Above this, the host's clock is reported as off from the database's (heatup itself keeps
# to the database's clock on PostgreSQL, but the host's logs and tools do not).
CLOCK_OFFSET_WARN_S: Final = 1.0
# The end the reaper gives the runs of a node whose lease ran out.
REAPED: Final = "the process running it stopped (its node's lease ran out)"
# The end a successor on the same host gives the runs of a node whose process is gone.
ENDED_BY_SUCCESSOR: Final = (
    "the process running it stopped (its successor on the host found it gone)"
)
# After a renewal failed (the database is unavailable), try again this soon.
RETRY_S: Final = 2.0


class LeaseObserver(Protocol):
    def clock_offset(self, seconds: float) -> None: ...


class NodeLease:
    def __init__(
        self,
        store: LeaseStore,
        name: str,
        timing: SchedulerSettings,
        *,
        clock: Clock,
        database_clock: DatabaseClock | None = None,
        observer: LeaseObserver | None = None,
    ) -> None:
        self._store = store
        self._name = name
        # The lease lasts ``stale_run_s`` and is renewed every ``heartbeat_s``.
        self._lease_s = timing.stale_run_s
        self._renew_every_s = timing.heartbeat_s
        self._clock = clock
        self._database_clock = database_clock
        self._observer = observer
        self._node: Node | None = None
        self._renewing = asyncio.Lock()
        self._renewed_at = 0.0  # monotonic
        self._clock_off = False
        self._failing = False
        self._markers: Markers | None = None

    @property
    def node(self) -> Node:
        """This process's node (``acquire`` first)."""
        if self._node is None:
            raise RuntimeError("the node's lease has not been acquired")
        return self._node

    @property
    def clock(self) -> Clock:
        """The clock this process keeps time by (the database's, on PostgreSQL)."""
        return self._clock

    @property
    def clock_offset_s(self) -> float:
        """How far this host's clock is ahead of the database's (0 on SQLite)."""
        return self._database_clock.offset_s if self._database_clock is not None else 0.0

    async def acquire(self) -> Node:
        """Register this process's node (the database must answer)."""
        reading = await self._timed(
            lambda: self._store.register_node(self._name, self._lease_s, self._clock.now())
        )
        previous, self._node = self._node, reading.node
        if self._markers is not None:
            if previous is None or previous.id != reading.node.id:  # else its marker holds
                if previous is not None:
                    self._markers.unmark(previous)
                self._markers.mark(reading.node)
        return reading.node

    async def renew(self) -> None:
        """Renew the lease now (requests that arrive during a renewal share it)."""
        asked_at = self._clock.monotonic()
        async with self._renewing:
            if self._renewed_at > asked_at:
                return  # renewed meanwhile
            node = self.node
            reading = await self._timed(
                lambda: self._store.renew_node(node, self._lease_s, self._clock.now())
            )
            if reading is None:
                log.warning(
                    "this node's lease was taken over (its runs in flight were ended by "
                    "another node, which judged it dead): registering again"
                )
                await self.acquire()

    async def keep(self) -> None:
        """Renew every ``renew_every_s`` until cancelled, waiting out database outages."""
        while True:
            try:
                await self.renew()
            except DatabaseUnavailable as exc:
                if not self._failing:
                    log.warning("cannot renew this node's lease yet: %s", exc)
                    self._failing = True
                await self._clock.sleep(RETRY_S)
                continue
            if self._failing:
                log.info("this node's lease is renewed again")
                self._failing = False
            await self._clock.sleep(self._renew_every_s)

    async def release(self) -> None:
        """Give the lease up (a clean stop, once every run of this node has ended)."""
        if self._node is not None:
            await self._store.release_node(self._node)

    @contextlib.asynccontextmanager
    async def held(
        self,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
        markers: Markers | None = None,
    ) -> AsyncIterator[Node]:
        """Acquire the lease and keep renewing it while the block runs; release it after.
        ``on_failure`` hears of the renewal task dying of anything but an outage (a bug:
        the process must stop, its runs would lose their lease). With ``markers``, the
        node is marked alive on this host while the lease is held, and the runs of nodes
        whose process on this host is gone end first."""
        self._markers = markers
        node = await self.acquire()
        keeper = asyncio.create_task(self.keep(), name="lease")

        def ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                on_failure(task.exception() or RuntimeError("the lease task ended"))

        keeper.add_done_callback(ended)
        try:
            if markers is not None:
                await end_dead_predecessors(markers, self._store, self._clock)
            yield node
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            try:
                await self.release()
            except DatabaseUnavailable as exc:  # it runs out by itself
                log.warning("could not release this node's lease: %s", exc)
            if markers is not None and self._node is not None:
                markers.unmark(self._node)

    async def _timed(self, write: Callable[[], Awaitable[R]]) -> R:
        sent = self._clock.monotonic()
        reading = await write()
        received = self._clock.monotonic()
        self._renewed_at = received
        if reading is not None and self._database_clock is not None:
            self._database_clock.observe(reading.database_now, sent, received)
            self._note_offset(self._database_clock.offset_s)
        return reading

    def _note_offset(self, offset_s: float) -> None:
        if self._observer is not None:
            self._observer.clock_offset(offset_s)
        off = abs(offset_s) > CLOCK_OFFSET_WARN_S
        if off and not self._clock_off:
            log.warning(
                "this host's clock is %.1f s %s the database's: heatup keeps to the "
                "database's clock, but fix this host's time synchronisation",
                abs(offset_s),
                "ahead of" if offset_s > 0 else "behind",
            )
        elif self._clock_off and not off:
            log.info("this host's clock agrees with the database's again")
        self._clock_off = off

"""The daemon's life: start in order, serve, ride out outages, stop gracefully.

Start: the database must be reachable and at the newest schema (else exit 1 with the
reason: systemd tries again); on SQLite, no other daemon may hold the database; the channel
pool is seeded if empty; the node's lease is taken, and the runs of a predecessor on this
host that died are ended at once (``succession``); stale runs are reaped and pending admin
edits applied; the scheduler's jobs start; the HTTP API listens; then systemd hears
``READY=1``.

While running: ``WATCHDOG=1`` from the event loop at half of ``$WATCHDOG_USEC`` (a stuck
loop gets restarted) and a one-line ``STATUS=`` (which names a database outage). A database
outage is waited out: dispatch pauses, ``/readyz`` answers 503 naming the database, runs
keep their writes until it answers. A scheduler job failing for another reason for a minute,
or a background task dying, stops the daemon with exit 1.

Stop (SIGTERM, SIGINT): ``STOPPING=1``; no new claims or API runs (503); runs in flight
finish their current action, for up to ``service.stop_timeout_s``; the rest are cancelled and
recorded ``interrupted``; the API closes last; exit 0. A second signal cancels the runs in
flight at once (their ends are still written), and the exit is still 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import IO, Final

from heatup_daemon.api import ApiState, create_app
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.db.migrate import head_revision
from heatup_daemon.db.repository import Repository, open_repository
from heatup_daemon.enums import ExitCode
from heatup_daemon.errors import DatabaseUnavailable, HeatupError, SchemaNotAtHead
from heatup_daemon.http_server import ReadyServer, server_config
from heatup_daemon.lease import CLOCK_OFFSET_WARN_S, NodeLease
from heatup_daemon.metrics import Metrics
from heatup_daemon.run.events import RunObserver
from heatup_daemon.scheduling.scheduler import Scheduler
from heatup_daemon.succession import Markers
from heatup_daemon.systemd import Notifier, watchdog_interval_s
from heatup_daemon.wiring import Parts, build_parts, node_lease

log = logging.getLogger(__name__)

STATUS_INTERVAL_S: Final = 10.0


class DaemonAlreadyRunning(HeatupError):
    """Another heatup daemon holds this SQLite database."""


@contextlib.contextmanager
def sqlite_single_process(database: DatabaseSettings) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite database for the daemon's lifetime: SQLite is
    for one daemon only (several daemons need PostgreSQL)."""
    path = database.sqlite_path
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    handle: IO[str] = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaemonAlreadyRunning(
                f"another heatup daemon is running on {path} (lock {lock_path}); SQLite is for "
                "one daemon only: stop it, or use PostgreSQL to run several"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


async def run_daemon(
    settings: Settings,
    *,
    once: bool = False,
    listeners: tuple[RunObserver, ...] = (),
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run until stopped (or, with ``once``, until what is due now has run); the exit code."""
    try:
        with sqlite_single_process(settings.database):
            return await _serve(settings, once=once, listeners=listeners, on_ready=on_ready)
    except (DaemonAlreadyRunning, DatabaseUnavailable, SchemaNotAtHead) as exc:
        log.error("heatup cannot start: %s", exc)
        return ExitCode.FAILURE


async def _serve(
    settings: Settings,
    *,
    once: bool,
    listeners: tuple[RunObserver, ...],
    on_ready: Callable[[], Awaitable[None]] | None,
) -> int:
    # From the first moment: a SIGTERM that systemd sends right after READY=1 (or during
    # start-up) must find heatup's handler, never the default action that kills at once.
    signals = None if once else _StopSignals()
    try:
        return await _serve_with(settings, once, listeners, on_ready, signals)
    finally:
        if signals is not None:
            signals.close()


async def _serve_with(
    settings: Settings,
    once: bool,
    listeners: tuple[RunObserver, ...],
    on_ready: Callable[[], Awaitable[None]] | None,
    signals: _StopSignals | None,
) -> int:
    async with open_repository(settings.database) as repository:
        await repository.ensure_ready()
        seeded = await repository.seed_channels(settings.channels)
        if seeded:
            log.info("seeded the channel pool with %d channels from the configuration", seeded)
        metrics = Metrics(ramp=settings.ramp.ramp)
        lease = node_lease(settings, repository, metrics)
        fatal: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        def on_fatal(exc: BaseException) -> None:
            if not fatal.done():
                fatal.set_result(exc)

        markers = Markers.of(settings.database)
        async with lease.held(on_failure=on_fatal, markers=markers):
            clock = lease.clock
            parts = build_parts(
                settings, repository, clock, metrics, lease, *listeners, on_fatal=on_fatal
            )
            scheduler = Scheduler(
                settings.scheduler,
                settings.history,
                repository,
                parts.in_flight,
                metrics,
                clock,
                lease,
                ramp=settings.ramp.ramp,
                rng=random.Random(),
                on_fatal=on_fatal,
            )
            try:
                if once:
                    started = await scheduler.run_once()
                    log.info("--once: %d runs started and finished", started)
                    return ExitCode.OK
                assert signals is not None
                daemon = _Daemon(
                    settings, repository, parts, scheduler, lease, metrics, fatal, signals
                )
                return await daemon.serve(on_ready)
            finally:
                await parts.aclose()


class _StopSignals:
    """SIGTERM and SIGINT, handled from when they are made until exit: the first asks for a
    graceful stop (one asked for during start-up happens once start-up ends), a second one
    calls ``on_again`` (the daemon cancels its runs at once)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.on_again: Callable[[], None] = lambda: None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def close(self) -> None:
        """The daemon has stopped (its runs ended, their ends written): from now on, while
        the process exits, SIGTERM and SIGINT are ignored (process-wide, in every thread),
        so that a late one never turns the exit into death by signal. uvloop, which heatup
        runs on, leaves that disposition as it closes."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.requested.is_set():
            log.info("%s received: stopping gracefully", name)
            self.requested.set()
            return
        log.warning("%s received again: cancelling the runs in flight now", name)
        self.on_again()


class _Daemon:
    """The daemon from READY to exit: the API, signals, status, watchdog, fatal failures."""

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        parts: Parts,
        scheduler: Scheduler,
        lease: NodeLease,
        metrics: Metrics,
        fatal: asyncio.Future[BaseException],
        signals: _StopSignals,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._parts = parts
        self._scheduler = scheduler
        self._lease = lease
        self._metrics = metrics
        self._fatal = fatal
        self._notifier = Notifier.from_environ()
        self._head = head_revision()
        self._background: list[asyncio.Task[None]] = []
        self._signals = signals
        signals.on_again = parts.in_flight.hurry
        self._stopping = False

    async def serve(self, on_ready: Callable[[], Awaitable[None]] | None) -> int:
        settings, scheduler = self._settings, self._scheduler
        # The reconcile and the counts jobs start at once: READY never waits on a whole table.
        await scheduler.prepare(reconcile=False, count=False)
        scheduler.start()
        api = ApiState(
            settings=settings,
            registry=self._repository,
            runner=self._parts.runner,
            in_flight=self._parts.in_flight,
            health=self.health,
            exposition=self._metrics.exposition,
            clock=self._lease.clock,
            on_registered=scheduler.reconcile_soon,
            session_counts=scheduler.last_counts,
        )
        server = ReadyServer(
            server_config(
                create_app(api),
                settings.api.host,
                settings.api.port,
                lifespan="off",
                log_config=None,  # uvicorn's lines go through heatup's JSON logging
                log_level=None,  # at the level logs.configure_logging gives third parties
            ),
            embedded=True,
        )
        serving = asyncio.create_task(server.serve(), name="api")
        if not await server.wait_listening(serving):
            log.error("the API cannot listen on %s:%d", settings.api.host, settings.api.port)
            await scheduler.stop(0)
            return ExitCode.FAILURE
        log.info("the API listens on http://%s:%d", settings.api.host, settings.api.port)
        self._start_background(serving)
        _responsive_loop()
        self._notifier.ready(await self.status())
        log.info("heatup is running as node %s", settings.node_name)
        if on_ready is not None:
            await on_ready()
        failure = await self._wait_for_stop()
        if failure is not None:
            log.error("heatup stops after a failure: %s: %s", type(failure).__name__, failure)
        in_flight = len(self._parts.in_flight)
        self._notifier.stopping(f"stopping: {in_flight} runs in flight")
        log.info(
            "stopping: %d runs in flight get %.0f s to finish their current action",
            in_flight,
            settings.service.stop_timeout_s,
        )
        api.accepting = False
        await scheduler.stop(settings.service.stop_timeout_s)
        await self._stop_background()
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        log.info("heatup stopped")
        return ExitCode.FAILURE if failure is not None else ExitCode.OK

    async def health(self) -> dict[str, str]:
        """The readiness checks, each ``ok`` or why not (live, with no side effects)."""
        checks = {"database": "ok", "dispatcher": "ok", "gateway_auth": "ok", "clock": "ok"}
        try:
            revision = await self._repository.schema_revision()
        except DatabaseUnavailable as exc:
            checks["database"] = str(exc)
        else:
            if revision != self._head:
                checks["database"] = f"schema at {revision}, heatup needs {self._head}"
        if not self._scheduler.running:
            checks["dispatcher"] = "stopping" if self._stopping else "not running"
        if self._parts.gateway.auth_failing:
            checks["gateway_auth"] = "the gateway refuses heatup's token"
        offset_s = self._lease.clock_offset_s
        if abs(offset_s) > CLOCK_OFFSET_WARN_S:
            side = "ahead of" if offset_s > 0 else "behind"
            checks["clock"] = (
                f"this host's clock is {abs(offset_s):.1f} s {side} the database's "
                "(heatup keeps to the database's; fix the host's time synchronisation)"
            )
        return checks

    async def status(self) -> str:
        counts, database = self._scheduler.counts, self._scheduler.jobs.database_error
        in_flight = f"{len(self._parts.in_flight)} runs in flight"
        if self._scheduler.counted:
            line = (
                f"{counts.scheduled} of {counts.sessions} sessions scheduled, {in_flight}, "
                f"{counts.invalid} invalid, {counts.needs_attention} need attention"
            )
        else:
            line = f"counting sessions, {in_flight}"
        if database is not None:
            return f"{line}; database unavailable: {database}"
        return f"{line}; last error: {self._scheduler.jobs.last_error or 'none'}"

    # --- background ---------------------------------------------------------------------

    def _start_background(self, serving: asyncio.Task[None]) -> None:
        self._background.append(asyncio.create_task(self._report_status(), name="status"))
        interval_s = watchdog_interval_s()
        if interval_s is not None:
            watchdog = self._ping_watchdog(interval_s)
            self._background.append(asyncio.create_task(watchdog, name="watchdog"))
        for task in (*self._background, serving):
            task.add_done_callback(self._died)

    async def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and not self._fatal.done():
            error = task.exception() or RuntimeError(f"the {task.get_name()} task ended")
            self._fatal.set_result(error)

    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            checks = await self.health()
            self._metrics.set_health(
                ready=all(value == "ok" for value in checks.values()),
                database_up=checks["database"] == "ok",
                gateway_auth_failing=checks["gateway_auth"] != "ok",
            )
            self._notifier.status(await self.status())

    async def _ping_watchdog(self, interval_s: float) -> None:
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval_s)

    # --- signals ------------------------------------------------------------------------

    async def _wait_for_stop(self) -> BaseException | None:
        """Until SIGTERM/SIGINT (``None``) or a fatal failure (the failure)."""
        stopper = asyncio.create_task(self._signals.requested.wait())
        try:
            waiters: list[asyncio.Future[object]] = [stopper, self._fatal]  # type: ignore[list-item]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        self._stopping = True
        return self._fatal.result() if self._fatal.done() else None


# How soon a busy worker thread (an import's parsing, SQLite's writer) hands the interpreter
# back to the event loop: 1 ms instead of Python's 5.
SWITCH_INTERVAL_S: Final = 0.001


def _responsive_loop() -> None:
    """Keep the event loop's stalls short once the daemon runs: threads yield the
    interpreter sooner, and what was built while starting is left out of the collector's
    full passes (each such pass over a large registry's objects holds the loop)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()

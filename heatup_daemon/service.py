"""The daemon's life: start in order, serve, stop gracefully.

Start: the database must be reachable and at the newest schema (else exit 1 with the
reason); on SQLite, no other daemon may hold the database; the channel pool is seeded if
empty; stale runs are reaped and pending admin edits applied; the scheduler's jobs start;
the HTTP API listens; then systemd hears ``READY=1``.

While running: ``WATCHDOG=1`` from the event loop at half of ``$WATCHDOG_USEC`` (a stuck
loop gets restarted) and a one-line ``STATUS=``. A scheduler job failing for a minute or a
background task dying stops the daemon with exit 1.

Stop (SIGTERM, SIGINT): ``STOPPING=1``; no new claims or API runs (503); runs in flight
finish their current action, for up to ``service.stop_timeout_s``; the rest are cancelled and
recorded ``interrupted``; the API closes last; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import IO, Any, Final

from heatup_daemon.api import ApiState, create_app
from heatup_daemon.clock import SystemClock
from heatup_daemon.config import DatabaseSettings, Settings
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.repository import Repository
from heatup_daemon.errors import DatabaseUnavailable, HeatupError, SchemaNotAtHead
from heatup_daemon.executor import ActionObserver
from heatup_daemon.parts import build_parts
from heatup_daemon.scheduler import Scheduler
from heatup_daemon.serving import ReadyServer, server_config
from heatup_daemon.systemd import Notifier, watchdog_interval_s

log = logging.getLogger(__name__)

STATUS_INTERVAL_S: Final = 10.0
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1


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
    on_action: ActionObserver | None = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run until stopped (or, with ``once``, until what is due now has run); the exit code."""
    try:
        with sqlite_single_process(settings.database):
            return await _serve(settings, once=once, on_action=on_action, on_ready=on_ready)
    except (DaemonAlreadyRunning, DatabaseUnavailable, SchemaNotAtHead) as exc:
        log.error("heatup cannot start: %s", exc)
        return EXIT_FAILURE


async def _serve(
    settings: Settings,
    *,
    once: bool,
    on_action: ActionObserver | None,
    on_ready: Callable[[], Awaitable[None]] | None,
) -> int:
    notifier = Notifier.from_environ()
    engine = create_engine(settings.database)
    try:
        repository = Repository(engine)
        await repository.ensure_ready()
        seeded = await repository.seed_channels(settings.channels)
        if seeded:
            log.info("seeded the channel pool with %d channels from the configuration", seeded)
        clock = SystemClock()
        parts = build_parts(settings, repository, clock)
        fatal: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        def on_fatal(exc: BaseException) -> None:
            if not fatal.done():
                fatal.set_result(exc)

        scheduler = Scheduler(
            settings.scheduler,
            repository,
            parts.runner,
            clock,
            settings.node_name,
            rng=random.Random(),
            on_fatal=on_fatal,
            on_action=on_action,
        )
        try:
            if once:
                started = await scheduler.run_once()
                log.info("--once: %d runs started and finished", started)
                return EXIT_OK
            api = ApiState(
                settings, repository, parts.runner, scheduler, lambda: parts.gateway.auth_failing
            )
            return await _until_stopped(settings, scheduler, api, notifier, fatal, on_ready)
        finally:
            await parts.aclose()
    finally:
        await engine.dispose()


async def _until_stopped(
    settings: Settings,
    scheduler: Scheduler,
    api: ApiState,
    notifier: Notifier,
    fatal: asyncio.Future[BaseException],
    on_ready: Callable[[], Awaitable[None]] | None,
) -> int:
    await scheduler.prepare()
    scheduler.start()
    listening = asyncio.Event()
    server = ReadyServer(
        server_config(create_app(api), settings.api.host, settings.api.port, lifespan="off"),
        listening.set,
        embedded=True,
    )
    serving = asyncio.create_task(server.serve(), name="api")
    waiting = asyncio.create_task(listening.wait())
    await asyncio.wait([waiting, serving], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if server.started:
        log.info("the API listens on http://%s:%d", settings.api.host, settings.api.port)
    else:
        log.error("the API cannot listen on %s:%d", settings.api.host, settings.api.port)
        await scheduler.stop(0)
        return EXIT_FAILURE
    running = _Running(scheduler, api.repository, notifier, fatal, serving)
    running.start_background()
    notifier.ready(await running.status())
    log.info("heatup is running as node %s", settings.node_name)
    if on_ready is not None:
        await on_ready()
    failure = await running.wait_for_stop()
    if failure is not None:
        log.error("heatup stops after a failure: %s: %s", type(failure).__name__, failure)
    notifier.stopping(f"stopping: {len(scheduler.in_flight)} runs in flight")
    log.info(
        "stopping: %d runs in flight get %.0f s to finish their current action",
        len(scheduler.in_flight),
        settings.service.stop_timeout_s,
    )
    api.accepting = False
    await scheduler.stop(settings.service.stop_timeout_s)
    await running.stop_background()
    server.should_exit = True
    await asyncio.gather(serving, return_exceptions=True)
    log.info("heatup stopped")
    return EXIT_FAILURE if failure is not None else EXIT_OK


class _Running:
    """The daemon between READY and STOPPING: signals, status, watchdog, fatal failures."""

    def __init__(
        self,
        scheduler: Scheduler,
        repository: Repository,
        notifier: Notifier,
        fatal: asyncio.Future[BaseException],
        serving: asyncio.Task[None],
    ) -> None:
        self._scheduler = scheduler
        self._repository = repository
        self._notifier = notifier
        self._fatal = fatal
        self._serving = serving
        self._background: list[asyncio.Task[None]] = []

    async def status(self) -> str:
        counts = await self._repository.session_counts()
        return (
            f"{counts['scheduled']} of {counts['sessions']} sessions scheduled, "
            f"{len(self._scheduler.in_flight)} runs in flight, {counts['invalid']} invalid, "
            f"{counts['needs_attention']} need attention; last error: "
            f"{self._scheduler.last_error or 'none'}"
        )

    def start_background(self) -> None:
        self._background.append(asyncio.create_task(self._report_status(), name="status"))
        interval_s = watchdog_interval_s()
        if interval_s is not None:
            watchdog = self._ping_watchdog(interval_s)
            self._background.append(asyncio.create_task(watchdog, name="watchdog"))
        for task in (*self._background, self._serving):
            task.add_done_callback(self._died)

    async def stop_background(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def wait_for_stop(self) -> BaseException | None:
        """Until SIGTERM/SIGINT (``None``) or a fatal failure (the failure)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        stopper = asyncio.create_task(stop.wait())
        try:
            waiters: list[asyncio.Future[Any]] = [stopper, self._fatal]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        return self._fatal.result() if self._fatal.done() else None

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and not self._fatal.done():
            error = task.exception() or RuntimeError(f"the {task.get_name()} task ended")
            self._fatal.set_result(error)

    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            self._notifier.status(await self.status())

    async def _ping_watchdog(self, interval_s: float) -> None:
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval_s)

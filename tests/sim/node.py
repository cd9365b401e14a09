"""One simulated heatup daemon: built as ``service.py`` and ``wiring.py`` build it, on the
simulation's ports.

The node takes its lease (``NodeLease.held``, renewed by its keeper task), builds the parts
with ``wiring.build_parts`` (the real runner, ``InFlight``, executor and durable recorder)
around the real planner chain (``LLMWithFallback`` over ``SimLLM``), starts the real
``Scheduler`` (dispatch, reconcile, reap, refresh, retention and roll-up, on APScheduler as
in production), serves the API's starts through the route functions themselves, and stops as
the daemon does on SIGTERM: no new starts, the runs finish their current action within
``service.stop_timeout_s``, the scheduler's jobs drain, the lease is released.

Its clock is the database's, as the lease reads it (``timing.clock.DatabaseClock``), carried
on the host's clock (``loop.HostClock``, which a skew may step). It dies by ``crash``: every
task and timer it made is cancelled at once, and its ports refuse it from then on, so that
nothing it does after the crash reaches the database, the gateway or the LLM.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, cast

from fastapi import HTTPException

from heatup_daemon import transfer
from heatup_daemon.api import routes, starting
from heatup_daemon.api.state import ApiState, status_of
from heatup_daemon.config.settings import Settings
from heatup_daemon.enums import Actor, Format, Surface
from heatup_daemon.errors import DatabaseUnavailable, HeatupError, InvalidValue
from heatup_daemon.lease import NodeLease
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner.chain import CircuitBreaker, LLMWithFallback
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import LLMPlanner
from heatup_daemon.scheduling.scheduler import Scheduler
from heatup_daemon.stores import NodeStore
from heatup_daemon.timing.clock import DatabaseClock
from heatup_daemon.validation import validate_edit
from heatup_daemon.views import Author
from heatup_daemon.wiring import Parts, build_parts
from tests.sim.loop import HostClock

CONSOLE: Author = Author(Surface.CONSOLE, Actor.TOKEN)


class SimNode:
    """One incarnation of a daemon on one machine of the cluster."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        host: HostClock,
        seed: int,
        ports: Callable[[SimNode], tuple[Any, Any, Any]],
    ) -> None:
        self.name = name
        self.settings = settings
        self.host = host
        self.clock = DatabaseClock(host)
        self.seed = seed
        self.dead = False
        self.partitioned = False
        self.tasks: dict[asyncio.Task[Any], None] = {}
        self.api: ApiState | None = None
        self.lease: NodeLease | None = None
        self.parts: Parts | None = None
        self.scheduler: Scheduler | None = None
        self.planner: LLMWithFallback | None = None
        self.exit: str | None = None  # stopped, failed, unstarted, crashed
        self.stopping = False
        self._stop = asyncio.Event()
        store, gateway, llm = ports(self)
        self.store: NodeStore = store
        self.gateway = gateway
        self.llm = llm

    def __repr__(self) -> str:
        return self.name

    @property
    def ready(self) -> bool:
        return self.api is not None and self.exit is None and not self.stopping

    # --- tasks ---------------------------------------------------------------------------------

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """A task made in this node's context belongs to it (a crash cancels it)."""
        if self.dead:
            task.cancel()
        self.tasks[task] = None

    def forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(task, None)

    def crash(self) -> int:
        """Die at once: every task cancelled, nothing graceful reaches a port."""
        self.dead = True
        self.exit = "crashed"
        loop = asyncio.get_running_loop()
        cancel_timers = getattr(loop, "cancel_timers_of", None)
        if cancel_timers is not None:
            cancel_timers(self)
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        return len(tasks)

    def request_stop(self) -> None:
        """SIGTERM."""
        self._stop.set()

    # --- life ----------------------------------------------------------------------------------

    async def main(self) -> str:
        """The daemon from start to exit; how it exited."""
        try:
            failure = await self._serve()
        except DatabaseUnavailable:  # heatup cannot start: exit 1, systemd tries again
            self.exit = "unstarted"
            return self.exit
        self.exit = "stopped" if failure is None else f"failed: {failure!r}"
        return self.exit

    def _planner_of(self, store: NodeStore, clock: DatabaseClock) -> LLMWithFallback:
        settings = self.settings
        llm = settings.llm
        fallback = FallbackPlanner(settings.planner, random.Random(settings.planner.seed))
        return LLMWithFallback(
            cast(LLMPlanner, self.llm),
            fallback,
            CircuitBreaker(llm.breaker_failures, llm.breaker_cooloff_s, clock),
            store,
            llm.daily_token_budget,
            clock,
        )

    async def _serve(self) -> BaseException | None:
        settings, store = self.settings, self.store
        metrics = Metrics(ramp=settings.ramp.ramp)
        lease = NodeLease(
            store,
            settings.node_name,
            settings.scheduler,
            clock=self.clock,
            database_clock=self.clock,
            observer=metrics,
        )
        self.lease = lease
        fatal: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        def on_fatal(exc: BaseException) -> None:
            if not fatal.done():
                fatal.set_result(exc)

        async with lease.held(on_failure=on_fatal):
            self.planner = self._planner_of(store, self.clock)
            parts = build_parts(
                settings,
                store,
                lease.clock,
                metrics,
                lease,
                gateway=self.gateway,
                planner=self.planner,
                on_fatal=on_fatal,
            )
            self.parts = parts
            scheduler = Scheduler(
                settings.scheduler,
                settings.history,
                store,
                parts.in_flight,
                metrics,
                lease.clock,
                lease,
                ramp=settings.ramp.ramp,
                rng=random.Random(self.seed),
                on_fatal=on_fatal,
            )
            self.scheduler = scheduler
            try:
                return await self._run(scheduler, parts, metrics, lease, fatal)
            finally:
                await parts.aclose()

    async def _run(
        self,
        scheduler: Scheduler,
        parts: Parts,
        metrics: Metrics,
        lease: NodeLease,
        fatal: asyncio.Future[BaseException],
    ) -> BaseException | None:
        settings = self.settings
        await scheduler.prepare(reconcile=False, count=False)
        scheduler.start()
        self.api = ApiState(
            settings=settings,
            registry=cast(Any, self.store),
            runner=parts.runner,
            in_flight=parts.in_flight,
            health=_healthy,
            exposition=metrics.exposition,
            clock=lease.clock,
            on_registered=scheduler.reconcile_soon,
            session_counts=scheduler.last_counts,
        )
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            waiters: list[asyncio.Future[Any]] = [stopper, fatal]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        self.stopping = True
        self.api.accepting = False
        await scheduler.stop(settings.service.stop_timeout_s)
        return fatal.result() if fatal.done() else None

    # --- what clients ask of it -------------------------------------------------------------------

    async def warmup(self, gateway_id: int, sync: bool) -> int:
        """``POST /warmup/{id}`` (or ``/warmup-sync/{id}``) as the route serves it: the HTTP
        status it answers."""
        api = self.api
        if api is None:
            return 503
        try:
            if sync:
                await routes.warmup_sync(gateway_id, api)
                return 200
            await routes.warmup(gateway_id, api)
            return 202
        except HTTPException as exc:
            return exc.status_code
        except HeatupError as exc:  # the app's handler of domain errors
            return status_of(exc)

    async def console_act(self, gateway_id: int, action: str) -> str:
        """A console button (``manage._act``): enable, disable, remove or run."""
        api = self.api
        if api is None:
            return "down"
        try:
            if action == "remove":
                await api.registry.remove_session(gateway_id, by=CONSOLE)
            elif action in ("enable", "disable"):
                await api.registry.set_session_enabled(gateway_id, action == "enable", by=CONSOLE)
                api.on_registered()
            else:
                await starting.start(api, gateway_id, None)
        except HeatupError as exc:
            return str(status_of(exc))
        return "ok"

    async def console_edit(self, gateway_id: int, changes: dict[str, object | None]) -> str:
        """The console's edit form (``manage.edit``)."""
        api = self.api
        if api is None:
            return "down"
        try:
            record = await api.registry.get_session(gateway_id)
            spec = validate_edit(record.public(), changes, api.clock.now())
            await api.registry.edit_session(spec, by=CONSOLE)
        except InvalidValue as exc:
            return f"422 {exc}"
        except HeatupError as exc:
            return str(status_of(exc))
        api.on_registered()
        return "ok"

    async def console_import(self, text: str, skip_invalid: bool) -> str:
        """The console's upload of a CSV file (``manage.import_file``)."""
        api = self.api
        if api is None:
            return "down"
        try:
            report = await transfer.register_all(
                api.registry,
                text,
                Format.CSV,
                skip_invalid=skip_invalid,
                by=CONSOLE,
                now=api.clock.now(),
            )
        except HeatupError as exc:
            return type(exc).__name__
        if report.written:
            api.on_registered()
        return f"read {report.read} written {report.written} problems {len(report.problems)}"


async def _healthy() -> dict[str, str]:
    return {"database": "ok", "dispatcher": "ok", "gateway_auth": "ok", "clock": "ok"}

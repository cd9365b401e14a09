"""A cluster of simulated heatup nodes on one shared store, driven through a scenario.

``simulate(seed)`` draws the scenario, builds the world (the store, the gateway, the LLM),
boots each machine's node, plays the events at their virtual times (crashes, restarts under
the same or another name, clean stops, clock skews, partitions from the database, outages,
API bursts, console imports and admin edits), checks the invariants as it goes, and at the
end heals every fault, lets the cluster settle (the reaper takes what crashed nodes left),
stops every node cleanly and checks everything once more. It returns the ``Result``: the
trace's digest, the violations, and the figures of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from types import SimpleNamespace
from typing import Any, Final

import apscheduler.executors.base
import apscheduler.schedulers.base
import apscheduler.triggers.interval

from heatup_daemon.planner import chain as chain_module
from heatup_daemon.scheduling import scheduler as scheduler_module
from heatup_daemon.validation import validate_channel, validate_session
from tests.sim import events
from tests.sim.faults import Fault, Faults, Weather, ported
from tests.sim.gateway import GatewayWorld, SimGateway
from tests.sim.invariants import Invariants
from tests.sim.llm import LLMWorld, SimLLM
from tests.sim.loop import EPOCH, OWNER, HostClock, Owner, VirtualLoop, log_fields
from tests.sim.node import SimNode
from tests.sim.scenario import Scenario
from tests.sim.store import DatabaseClock, SimStore
from tests.sim.trace import LogCapture, Trace, Violation, captured_logs

CHECK_EVERY_S: Final = 10.0
# systemd's Restart=on-failure delay for a node that could not start or stopped on a failure.
RESTART_S: Final = 5.0
# How long the end's clean stop of every node may take (runs finish, writes wait out nothing).
STOP_WITHIN_S: Final = 900.0


@dataclass
class Result:
    seed: int
    trace: Trace
    violations: list[Violation]
    simulated_s: float
    faults: Counter[str]
    events: int
    requests: int
    operations: int
    llm_calls: int
    runs: int
    actions: int
    callbacks: int
    trace_lines: int
    cpu_s: float

    @property
    def failed(self) -> bool:
        return bool(self.violations)

    @property
    def digest(self) -> str:
        return self.trace.digest()


class Tasks:
    """Which execution each task belongs to: a task made inside a run's context (the
    executor's shielded writes, the run's end) belongs to the task that runs the run; any
    other task is a root of its own."""

    def __init__(self) -> None:
        self._serial = 0
        self._roots: dict[asyncio.Task[Any], tuple[int, Owner | None]] = {}

    def created(self, task: asyncio.Task[Any], owner: Owner | None) -> None:
        self._serial += 1
        root = self._serial
        if "run" in log_fields():
            parent = asyncio.current_task()
            if parent is not None and parent in self._roots:
                root = self._roots[parent][0]
        self._roots[task] = (root, owner)
        if owner is not None:
            owner.adopt(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        _, owner = self._roots.pop(task)
        if owner is not None:
            owner.forget(task)

    def root(self) -> int:
        task = asyncio.current_task()
        held = None if task is None else self._roots.get(task)
        return 0 if held is None else held[0]


class Machine:
    """A host of the cluster: one node at a time, its clock kept across restarts."""

    def __init__(self, index: int, host: HostClock) -> None:
        self.index = index
        self.host = host
        self.node: SimNode | None = None
        self.main: asyncio.Task[str] | None = None
        self.generation = 0
        self.cut = 0  # partitions from the database in force


class Cluster:
    def __init__(self, scenario: Scenario, loop: VirtualLoop, trace: Trace) -> None:
        self.scenario = scenario
        self.loop = loop
        self.trace = trace
        self.faults: Counter[str] = Counter()
        self.weather = Weather()
        self.tasks = Tasks()
        loop.on_task = self.tasks.created
        self.store = SimStore(DatabaseClock(loop.wall))
        self.gateway = GatewayWorld(
            time=loop.time,
            root=self.tasks.root,
            rates=scenario.telegram,
            deleted=set(scenario.deleted),
            private=set(scenario.private),
        )
        self.llm = LLMWorld(time=loop.time, today=lambda: loop.wall().date())
        self.invariants = Invariants(
            self.store,
            self.gateway,
            self.llm,
            trace,
            scenario.settings("check"),
            self.tasks.root,
        )
        self.machines = [
            Machine(index, HostClock(loop, boot_s=1000.0 * (index + 1)))
            for index in range(scenario.machines)
        ]
        self.ending = False
        self.background: set[asyncio.Task[None]] = set()  # the harness's own tasks
        self.events = 0
        self.imported = 0

    def note(self, *fields: object) -> None:
        self.trace.add(*fields)

    # --- nodes ----------------------------------------------------------------------------------

    def _ports(self, node: SimNode) -> tuple[Any, Any, Any]:
        scenario, seed = self.scenario, f"{self.scenario.seed}:{node.name}:{node.seed}"

        def faults(port: str, rates: Any) -> Faults:
            return Faults(random.Random(f"{seed}:{port}"), rates, self.faults, self.weather)

        store = ported(
            self.store, node, faults("store", scenario.store_rates), self.note, self.invariants
        )
        gateway = SimGateway(
            self.gateway,
            node,
            faults("gateway", scenario.gateway_rates),
            scenario.deadline_s,
            self.note,
        )
        llm = SimLLM(
            self.llm,
            node,
            faults("llm", scenario.llm_rates),
            scenario.settings(node.name).planner,
            self.note,
        )
        return store, gateway, llm

    def boot(self, machine: Machine, new_name: bool = False) -> SimNode:
        """Start a node on ``machine`` (under a new name if ``new_name``)."""
        if machine.main is not None and not machine.main.done():
            if machine.node is None or not machine.node.dead:
                raise RuntimeError(f"machine {machine.index} runs a node already")
        machine.generation += 1
        if machine.generation > 1:
            self.faults[Fault.RESTART] += 1
        name = f"node-{machine.index}"
        if new_name:
            name = f"node-{machine.index}-{machine.generation}"
        seed = machine.index * 1000 + machine.generation
        node = SimNode(name, self.scenario.settings(name), machine.host, seed, self._ports)
        node.partitioned = machine.cut > 0
        machine.node = node
        context = contextvars.copy_context()
        context.run(OWNER.set, node)
        main = self.loop.create_task(node.main(), name=f"{name} main", context=context)
        main.add_done_callback(lambda task: self._exited(machine, node, task))
        machine.main = main
        self.note(name, "boot", machine.generation)
        return node

    def _exited(self, machine: Machine, node: SimNode, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            how = node.exit or "cancelled"
        elif task.exception() is not None:
            how = f"died: {task.exception()!r}"
            self.trace.violated("nodes_exit_cleanly", f"{node.name} {how}")
        else:
            how = task.result()
        self.note(node.name, "exit", how)
        if how == "stopped":
            self.invariants.check_stopped(node)
        elif how.startswith("failed"):
            self.trace.violated("nodes_exit_cleanly", f"{node.name} stopped on a failure: {how}")
        if (how == "unstarted" or how.startswith("failed")) and not self.ending:
            self.loop.call_later(RESTART_S, self._restart, machine)

    def _restart(self, machine: Machine) -> None:
        if machine.main is None or machine.main.done():
            self.boot(machine)

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        scenario = self.scenario
        await self._register()
        for machine in self.machines:
            self.boot(machine)
        checker = asyncio.ensure_future(self._check_forever())
        try:
            for event in scenario.events:
                await asyncio.sleep(max(event.at_s - self.loop.time(), 0.0))
                self.events += 1
                self.faults[event.kind] += 1
                self.note("event", event.kind, event.machine, f"{event.seconds:.3f}", event.count)
                events.play(self, event)
            await asyncio.sleep(max(scenario.duration_s - self.loop.time(), 0.0))
            await self._end()
        finally:
            checker.cancel()

    async def _register(self) -> None:
        store, scenario = self.store, self.scenario
        for name in scenario.channels:
            await store.add_channel(
                validate_channel(username=name, title=name, category="sim", description=None)
            )
        for plan in scenario.sessions:
            spec = validate_session(
                gateway_session_id=plan.gateway_id,
                schedule=plan.schedule,
                jitter_seconds=plan.jitter_s,
                timezone="UTC",
                label=None,
            )
            created = EPOCH - timedelta(days=plan.age_days, hours=1)
            spec = replace(spec, account_created_at=created)
            await store.add_session(spec, enabled=plan.enabled)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            self.invariants.check()

    async def _end(self) -> None:
        """Heal every fault (no partition, no fault drawn), let the cluster settle (a dead
        node's lease runs out and the reaper ends its runs), stop every node cleanly."""
        self.ending = True
        self.weather.calm = True
        self.note("end", "heal")
        for machine in self.machines:
            machine.cut = 0
            node = machine.node
            if node is not None:
                node.partitioned = False
            if machine.main is None or machine.main.done() or (node is not None and node.dead):
                self.boot(machine)
        await asyncio.sleep(self.scenario.settle_s)
        self.note("end", "stop")
        mains = []
        for machine in self.machines:
            if machine.node is not None and machine.main is not None:
                machine.node.request_stop()
                mains.append(machine.main)
        _, pending = await asyncio.wait(mains, timeout=STOP_WITHIN_S)
        for task in pending:
            self.trace.violated("nodes_exit_cleanly", f"{task.get_name()} did not stop")
        self.invariants.check_end()


@contextlib.contextmanager
def host_time(loop: VirtualLoop, seed: int) -> Iterator[None]:
    """APScheduler and the scheduler's housekeeping keep the host's time: the loop's. So
    does every timer heatup reads beside its ``Clock``; and the planner chain's keys
    (``uuid.uuid4``) are drawn from the seed."""

    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            moment = loop.wall()
            return moment.astimezone(tz) if tz is not None else moment.replace(tzinfo=None)

    modules: tuple[Any, ...] = (
        apscheduler.schedulers.base,
        apscheduler.triggers.interval,
        apscheduler.executors.base,
    )
    saved = [module.datetime for module in modules]
    scheduling: Any = scheduler_module
    host, timer = scheduling.HOST, scheduling.time
    for module in modules:
        module.datetime = VirtualDatetime
    scheduling.HOST = HostClock(loop)
    # The refresh job times its counts (and spaces them by their cost): on the loop's clock,
    # where they cost nothing, never on the host's, where a busy machine would change the run.
    scheduling.time = SimpleNamespace(perf_counter=loop.time)
    chain: Any = chain_module
    keys = random.Random(f"{seed}:keys")
    drawn = SimpleNamespace(uuid4=lambda: uuid.UUID(int=keys.getrandbits(128), version=4))
    ids = getattr(chain, "uuid", None)
    if ids is not None:
        chain.uuid = drawn
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.datetime = original
        scheduling.HOST = host
        scheduling.time = timer
        if ids is not None:
            chain.uuid = ids


def simulate(seed: int, *, verbose: bool = False, duration_s: float | None = None) -> Result:
    """Run the scenario of ``seed`` to its end; what it found."""
    started = time.process_time()
    scenario = Scenario.drawn(seed, duration_s)
    loop = VirtualLoop(random.Random(f"{seed}:order"))
    trace = Trace(loop.time)
    cluster = Cluster(scenario, loop, trace)

    def owner() -> str:
        node = OWNER.get()
        if node is None:
            return "sim"
        return f"{getattr(node, 'name', '?')}{' (dead)' if node.dead else ''}"

    def unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error, future = context.get("exception"), context.get("future")
        what = getattr(future, "get_coro", lambda: future)()
        name = getattr(what, "__qualname__", type(what).__name__)  # no address: one trace
        trace.violated(
            "no_unexpected_errors",
            f"{owner()}: {context.get('message')}: {error!r} in {name}"[:400],
        )

    loop.set_exception_handler(unhandled)
    capture = LogCapture(trace, owner, verbose)
    gc_was = gc.isenabled()
    gc.collect()
    gc.freeze()  # what was alive before this run is not scanned again
    gc.disable()
    try:
        with captured_logs(capture, 10 if verbose else 30), host_time(loop, seed):
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(cluster.run())
                _drain(loop, trace)
            finally:
                asyncio.set_event_loop(None)
                loop.close()
    finally:
        gc.collect()
        if gc_was:
            gc.enable()
    store = cluster.store
    return Result(
        seed=seed,
        trace=trace,
        violations=trace.violations,
        simulated_s=loop.time(),
        faults=cluster.faults,
        events=cluster.events,
        requests=cluster.gateway.requests,
        operations=len(cluster.gateway.operations),
        llm_calls=len(cluster.llm.calls),
        runs=len(store.runs),
        actions=sum(len(run.actions) for run in store.runs.values()),
        callbacks=loop.callbacks,
        trace_lines=trace.count,
        cpu_s=time.process_time() - started,
    )


def _drain(loop: VirtualLoop, trace: Trace) -> None:
    """Cancel what is left (the harness's own tasks), and report a node's task left over."""
    left = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in left:
        coro = task.get_coro()
        trace.add("left", getattr(coro, "__qualname__", "?"))  # a name, not a counter's
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))

"""What each scenario event does to the cluster.

Machine events: a crash (the node dies; the machine boots a node again after
``event.seconds``, under another name with ``event.flag``), a clean stop (SIGTERM, then a
restart after ``event.seconds``), a clock skew (the host's wall clock stepped), a partition
from the database for ``event.seconds`` (the gateway stays reachable). Cluster events: an
outage of the database for every node. Clients' events, served by one node's API in that
node's own tasks: a burst of runs started now (some for sessions due this very moment, so
that they meet the dispatcher's claims; some twice; one for an unknown session), a console
import of a CSV file, an admin's edit (by the console, or by hand in SQL).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from heatup_daemon import transfer
from heatup_daemon.session import ROW_DEFAULTS
from heatup_daemon.validation import validate_session
from tests.sim.faults import Fault
from tests.sim.loop import OWNER
from tests.sim.scenario import SCHEDULES, Event

if TYPE_CHECKING:
    from tests.sim.cluster import Cluster, Machine
    from tests.sim.node import SimNode

IMPORT_HEADER: Final = ",".join(transfer.FIELDS)
FIRST_IMPORTED_ID: Final = 5000
UNKNOWN_ID: Final = 999_999


def play(cluster: Cluster, event: Event) -> None:
    HANDLERS[event.kind](cluster, event)


def _live(machine: Machine) -> SimNode | None:
    node = machine.node
    if node is None or node.dead or machine.main is None or machine.main.done():
        return None
    return node


def _in_node(cluster: Cluster, node: SimNode, what: str, work: Coroutine[Any, Any, object]) -> None:
    """Serve ``work`` in a task of ``node``'s (a crash cancels it with the node's others)."""
    context = contextvars.copy_context()
    context.run(OWNER.set, node)

    async def served() -> None:
        try:
            answer = await work
        except Exception as exc:  # uvicorn's 500, and its ERROR line
            cluster.trace.violated("no_unexpected_errors", f"{node.name} {what}: 500 {exc!r}")
            return
        cluster.note(node.name, "client", what, answer)

    cluster.loop.create_task(served(), name=f"{node.name} {what}", context=context)


# --- machines --------------------------------------------------------------------------------


def crash(cluster: Cluster, event: Event) -> None:
    machine = cluster.machines[event.machine]
    node = _live(machine)
    if node is None:
        return
    cancelled = node.crash()
    cluster.note(node.name, "crash", cancelled)
    _restart_after(cluster, machine, event.seconds, event.flag)


def stop(cluster: Cluster, event: Event) -> None:
    machine = cluster.machines[event.machine]
    node = _live(machine)
    if node is None:
        return
    node.request_stop()
    main = machine.main
    assert main is not None

    async def then_restart() -> None:
        await asyncio.wait([main])
        await asyncio.sleep(event.seconds)
        _boot_again(cluster, machine, event.flag)

    task = asyncio.ensure_future(then_restart())
    cluster.background.add(task)
    task.add_done_callback(cluster.background.discard)


def _restart_after(cluster: Cluster, machine: Machine, seconds: float, new_name: bool) -> None:
    cluster.loop.call_later(seconds, _boot_again, cluster, machine, new_name)


def _boot_again(cluster: Cluster, machine: Machine, new_name: bool) -> None:
    running = machine.main is not None and not machine.main.done()
    if cluster.ending or (running and machine.node is not None and not machine.node.dead):
        return
    cluster.boot(machine, new_name)


def skew(cluster: Cluster, event: Event) -> None:
    machine = cluster.machines[event.machine]
    machine.host.skew_s += event.seconds


def partition(cluster: Cluster, event: Event) -> None:
    _cut(cluster, [cluster.machines[event.machine]], event.seconds)


def brownout(cluster: Cluster, event: Event) -> None:
    """The gateway answers slowly (each request up to its deadline) for ``seconds``; with
    ``flag``, the machine loses the database a little later, until the brownout ends (its
    calls already cleared go on, and its lease cannot be renewed)."""
    world = cluster.gateway
    world.slow_until_s = max(world.slow_until_s, cluster.loop.time() + event.seconds)
    if event.flag and event.machine >= 0:
        later_s = random.Random(event.seed).uniform(2.0, min(40.0, event.seconds / 2))
        machines = [cluster.machines[event.machine]]
        cluster.loop.call_later(later_s, _cut, cluster, machines, event.seconds - later_s)


def outage(cluster: Cluster, event: Event) -> None:
    _cut(cluster, cluster.machines, event.seconds)


def _cut(cluster: Cluster, machines: list[Machine], seconds: float) -> None:
    for machine in machines:
        machine.cut += 1
        if machine.node is not None:
            machine.node.partitioned = True

    def heal() -> None:
        for machine in machines:
            machine.cut = max(machine.cut - 1, 0)
            if machine.node is not None:
                machine.node.partitioned = machine.cut > 0

    cluster.loop.call_later(seconds, heal)


# --- clients -----------------------------------------------------------------------------------


def api_burst(cluster: Cluster, event: Event) -> None:
    node = _live(cluster.machines[event.machine])
    if node is None or not node.ready:
        return
    rng = random.Random(event.seed)
    registered = [row["gateway_session_id"] for row in cluster.store.sessions.values()]
    now = cluster.store.db_clock.now()
    soon = now + timedelta(seconds=cluster.scenario.dispatch_s + 1)
    due = [
        row["gateway_session_id"]
        for row in cluster.store.sessions.values()
        if row["next_run_at"] is not None and row["next_run_at"] <= soon
    ]
    for index in range(event.count):
        if index == 0 and rng.random() < 0.1:
            gateway_id = UNKNOWN_ID
        elif due and rng.random() < 0.7:
            gateway_id = rng.choice(due)
        elif registered:
            gateway_id = rng.choice(registered)
        else:
            return
        sync = rng.random() < 0.3
        what = f"{'warmup-sync' if sync else 'warmup'} {gateway_id}"
        _in_node(cluster, node, what, node.warmup(gateway_id, sync))


def import_file(cluster: Cluster, event: Event) -> None:
    node = _live(cluster.machines[event.machine])
    if node is None or not node.ready:
        return
    rng = random.Random(event.seed)
    lines = [IMPORT_HEADER]
    for _ in range(event.count):
        cluster.imported += 1
        gateway_id = FIRST_IMPORTED_ID + cluster.imported
        schedule = rng.choice(SCHEDULES)
        lines.append(f"{gateway_id},{schedule},{rng.choice((0, 20))},UTC,imported,,true")
    if rng.random() < 0.3:  # a row already registered
        lines.append(f"{cluster.scenario.sessions[0].gateway_id},5m,0,UTC,again,,true")
    if rng.random() < 0.3:  # a row that breaks a rule
        lines.append(f"{FIRST_IMPORTED_ID + 900 + cluster.imported},every day,0,UTC,bad,,true")
    what = f"import {event.count} rows"
    _in_node(cluster, node, what, node.console_import("\n".join(lines) + "\n", event.flag))


def admin_edit(cluster: Cluster, event: Event) -> None:
    rng = random.Random(event.seed)
    store = cluster.store
    rows = sorted(store.sessions.items())
    if not rows:
        return
    session_id, row = rng.choice(rows)
    gateway_id = row["gateway_session_id"]
    node = _live(cluster.machines[event.machine])
    choice = rng.choice(("edit", "disable", "enable", "run", "remove", "hand", "add", "channel"))
    cluster.note("admin", choice, gateway_id)
    if choice == "hand":  # an admin's SQL: a value heatup cannot use, fixed a minute later
        row["timezone"] = "Mars/Olympus_Mons"
        cluster.loop.call_later(60.0, _fix_timezone, store, session_id)
    elif choice == "add":
        cluster.imported += 1
        spec = validate_session(
            gateway_session_id=FIRST_IMPORTED_ID + 500 + cluster.imported,
            schedule=rng.choice(SCHEDULES),
            jitter_seconds=0,
            timezone="UTC",
            label="added",
        )
        row_id = store._next_id()
        store.sessions[row_id] = {
            **ROW_DEFAULTS,
            **spec.columns(True),
            "created_at": store.db_clock.now(),
        }
    elif choice == "channel":
        channel = rng.choice(sorted(store.channels))
        store.channels[channel]["enabled"] = not store.channels[channel]["enabled"]
    elif node is not None and node.ready:
        if choice == "edit":
            changes: dict[str, object | None] = {"schedule": rng.choice(SCHEDULES)}
            _in_node(cluster, node, f"edit {gateway_id}", node.console_edit(gateway_id, changes))
        else:
            _in_node(cluster, node, f"{choice} {gateway_id}", node.console_act(gateway_id, choice))


def _fix_timezone(store: Any, session_id: int) -> None:
    row = store.sessions.get(session_id)
    if row is not None:
        row["timezone"] = "UTC"


HANDLERS: Final[dict[Fault, Callable[[Cluster, Event], None]]] = {
    Fault.CRASH: crash,
    Fault.STOP: stop,
    Fault.SKEW: skew,
    Fault.PARTITION: partition,
    Fault.OUTAGE: outage,
    Fault.BROWNOUT: brownout,
    Fault.API_BURST: api_burst,
    Fault.IMPORT: import_file,
    Fault.ADMIN_EDIT: admin_edit,
}

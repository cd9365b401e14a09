"""The promises of heatup's README, each a named check on the shared store and on what the
gateway and the LLM saw.

They are checked as the simulation runs: at each port call that bears on them (a gateway
request as it opens and as it closes, a store call as it lands), every few virtual seconds
on the whole store, when a node has stopped cleanly, and once at the end. Each violation is
recorded once (``trace.Trace.violated``) under the invariant's name:

- ``one_task_per_run``: a run is executed by at most one task (the task a launch made, and
  the tasks it makes for itself);
- ``one_run_in_flight_per_session``: a session has at most one ``running`` row, and the
  gateway serves one run of a session at a time (never two runs' calls interleaved);
- ``slot_rows_chain``: every slot leaves exactly one row (the scheduled rows of a session
  form a chain, broken only where a reconcile placed the slots anew);
- ``calls_within_run`` and ``calls_within_lease``: no gateway request for a run that has
  ended, nor while its node's lease has run out (by the simulation's clock);
- ``action_rows_match_gateway``: an ``ok`` row has its successful call; a call has its row
  (written before it), and a join that happened is never recorded as failed;
- ``join_places_add_up``: a place is ``reserved`` only while its run is running, a join that
  happened kept its place, and no session or channel got more joins than the ramp and the
  channel's pace allow;
- ``tokens_add_up``: the day's ledger is never below what the LLM calls used, never above
  the budget, and once every node has stopped it equals what they used plus only the
  reservations the design lets stand (a call cancelled, an answer lost, a node that died);
- ``no_running_after_clean_stop``: a node that stopped cleanly leaves no ``running`` row;
- ``no_unexpected_errors`` (``trace.LogCapture``) and ``nodes_exit_cleanly`` (the cluster).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterable
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeVar

from heatup_daemon.config.settings import Settings
from heatup_daemon.enums import JoinStatus, RunStatus
from heatup_daemon.records import LeaseReading, RunView
from heatup_daemon.session import read_time
from tests.sim import history
from tests.sim.faults import Reachable
from tests.sim.gateway import GatewayWorld, Operation, Request
from tests.sim.llm import LLMWorld
from tests.sim.loop import log_fields
from tests.sim.store import LeaseEntry, SimStore
from tests.sim.trace import Trace

T = TypeVar("T")

TOKEN_OPS: Final = frozenset({"reserve_tokens", "spend_tokens", "settle_tokens"})
# The store calls a run's own task makes for it (its end is written by a task of its own
# making, and counts as the same execution).
RUN_OPS: Final = frozenset(
    {
        "planning_facts",
        "reserve_joins",
        "set_run_plan",
        "start_call",
        "record_action",
        "record_join",
        "set_cooldown",
        "mark_needs_attention",
        "note_channel_failure",
    }
)
EPSILON_S: Final = 1e-5
DAY: Final = timedelta(days=1)


def at_once(coro: Coroutine[Any, Any, T]) -> T:
    """The value of a coroutine that never suspends (a read of the in-memory store)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the store's read suspended")


def lease_gap(log: list[LeaseEntry], start_s: float, end_s: float) -> float | None:
    """The first moment in ``[start_s, end_s]`` at which the lease did not hold (its row
    gone, or its ``lease_until`` passed), or ``None`` if it held throughout. Times within
    ``EPSILON_S`` are the same moment (the store keeps microseconds)."""
    start_s, end_s = start_s + EPSILON_S, end_s - EPSILON_S
    index = bisect.bisect_right(log, start_s, key=_written_at)
    until = log[index - 1][1] if index else None
    if until is None or until < start_s:
        return start_s
    while index < len(log) and log[index][0] <= end_s:
        written_at, new_until = log[index]
        if until < written_at:
            return until
        if new_until is None:
            return written_at
        until = new_until
        index += 1
    return until if until < end_s else None


def _written_at(entry: LeaseEntry) -> float:
    return entry[0]


class Invariants:
    """Every invariant of the simulation, and what it must remember to check them."""

    def __init__(
        self,
        store: SimStore,
        gateway: GatewayWorld,
        llm: LLMWorld,
        trace: Trace,
        settings: Settings,
        root: Any,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._llm = llm
        self._trace = trace
        self._settings = settings
        self._root = root
        self.run_roots: dict[int, set[int]] = defaultdict(set)
        self._callers: dict[int, list[int]] = defaultdict(list)  # session -> runs, in order
        self._open: dict[int, Counter[int]] = defaultdict(Counter)  # session -> run -> open
        self.lease_ids: dict[int, set[int]] = defaultdict(set)  # id(node) -> lease rows
        self.token_troubled: set[int] = set()  # id(node)
        self.unended: dict[int, set[int]] = defaultdict(set)  # id(node) -> runs whose end failed
        self.lost_reserved = 0
        self._born: dict[int, datetime] = {}  # gateway id -> its account's creation
        self._stale_places: dict[tuple[int, int], datetime] = {}  # first seen held by an end
        # Within this, a reaper's pass has settled what an ended run held.
        self._sweep_s = 3 * settings.scheduler.heartbeat_s + 30.0
        gateway.on_open = self.request_opened
        gateway.on_close = self.request_closed

    def _violated(self, invariant: str, detail: str) -> None:
        self._trace.violated(invariant, detail)

    # --- store calls as they land (faults.Watcher) -----------------------------------------

    def landed(self, node: Reachable, name: str, args: tuple[Any, ...], result: Any) -> None:
        if name == "finish_run":
            self.unended[id(node)].discard(args[0])
        if name in RUN_OPS:
            run = _context_run()
            if run is not None:
                self._executed_by(run, self._root())
        elif isinstance(result, LeaseReading):
            self.lease_ids[id(node)].add(result.node.id)

    def lost(self, node: Reachable, name: str, args: tuple[Any, ...], result: Any) -> None:
        if name in TOKEN_OPS:
            self.token_troubled.add(id(node))
            if name == "reserve_tokens" and result is True:
                self.lost_reserved += int(args[-2])

    def failed(self, node: Reachable, name: str, args: tuple[Any, ...]) -> None:
        if name in TOKEN_OPS:
            self.token_troubled.add(id(node))
        elif name == "finish_run":  # left to the reaper, unless a later end lands
            self.unended[id(node)].add(args[0])

    def _executed_by(self, run: int, root: int) -> None:
        roots = self.run_roots[run]
        if root in roots:
            return
        roots.add(root)
        self._trace.add("run", run, "executed by task", root)
        if len(roots) > 1:
            self._violated("one_task_per_run", f"run {run} is executed by {len(roots)} tasks")

    # --- gateway requests -----------------------------------------------------------------

    def request_opened(self, request: Request) -> None:
        operation = request.operation
        run = operation.run
        if run is None:
            self._violated("calls_within_run", f"a {operation.op} call outside a run")
            return
        self._executed_by(run, operation.root)
        self._within_run(request, "starts")
        if operation.requests == 1:
            self._has_row(operation)
        callers, opened = self._callers[operation.session], self._open[operation.session]
        others = [other for other, count in opened.items() if count and other != run]
        if others:
            self._violated(
                "one_run_in_flight_per_session",
                f"session {operation.session}: run {run} calls the gateway while run "
                f"{others[0]}'s call is in flight",
            )
        if not callers or callers[-1] != run:
            if run in callers:
                self._violated(
                    "one_run_in_flight_per_session",
                    f"session {operation.session}: run {run} calls the gateway again after "
                    f"run {callers[-1]} did",
                )
            callers.append(run)
        opened[run] += 1

    def request_closed(self, request: Request) -> None:
        operation = request.operation
        if operation.run is None:
            return
        self._open[operation.session][operation.run] -= 1
        self._within_run(request, "ends")

    def _has_row(self, operation: Operation) -> None:
        run = self._store.runs.get(operation.run or 0)
        if run is None or not any(a.seq == operation.seq for a in run.actions):
            self._violated(
                "action_rows_match_gateway",
                f"run {operation.run} action {operation.seq}: a {operation.op} call before its "
                "in-flight row was written",
            )

    def _within_run(self, request: Request, edge: str) -> None:
        operation, store = request.operation, self._store
        run_id = operation.run or 0
        run = store.runs.get(run_id)
        if run is None or run.status is not RunStatus.RUNNING:
            status = "gone" if run is None else run.status.value
            self._violated(
                "calls_within_run",
                f"run {run_id} ({operation.node}): a {request.name} request {edge} after the "
                f"run ended ({status})",
            )
        node_id = store.run_nodes.get(run_id)
        start_s = request.started_s
        end_s = start_s if edge == "starts" else request.ended_s
        gap = lease_gap(store.lease_log.get(node_id or -1, []), start_s, end_s)
        if gap is not None:
            self._violated(
                "calls_within_lease",
                f"run {run_id} ({operation.node}): a {request.name} request from "
                f"{start_s:.1f} s to {end_s:.1f} s outlived its node's lease (ran out at "
                f"{gap:.1f} s)",
            )

    # --- the whole store ------------------------------------------------------------------

    def check(self) -> None:
        """The invariants that hold at every moment."""
        self._note_births()
        self._one_running_per_session()
        self._reserved_places_of_running_runs()
        self._tokens(final=False)
        self._joined_are_members()

    def check_end(self) -> None:
        """Everything, once every node has stopped."""
        self._sweep_s = 0.0  # every node stopped: nothing is reserved any more
        self.check()
        self._no_running(self._store.runs.values(), "every node stopped")
        history.actions_match_gateway(self._store, self._gateway, self._violated)
        history.places_match_gateway(self._store, self._gateway, self._violated)
        self._within_limits()
        self._tokens(final=True)
        history.slot_chains(self._store, self._violated)

    def check_stopped(self, node: Reachable) -> None:
        """A node has stopped cleanly: none of its runs is still ``running``, except those
        whose end the database did not take (the README: left to the reaper, and
        ``check_end`` sees them ended). A node whose lease's release did not land could not
        reach the database at its stop: all its runs are the reaper's."""
        leases = self.lease_ids[id(node)]
        store = self._store
        if any(store.lease_log.get(lease, [(0.0, None)])[-1][1] is not None for lease in leases):
            return
        unended = self.unended[id(node)]
        runs = (
            run
            for run in store.runs.values()
            if store.run_nodes.get(run.id) in leases and run.id not in unended
        )
        self._no_running(runs, f"{node.name} stopped cleanly")

    def _no_running(self, runs: Iterable[RunView], when: str) -> None:
        for run in runs:
            if run.status is RunStatus.RUNNING:
                self._violated(
                    "no_running_after_clean_stop",
                    f"run {run.id} of session {run.gateway_session_id} ({run.trigger}) is still "
                    f"running after {when}",
                )

    def _one_running_per_session(self) -> None:
        running: Counter[int | None] = Counter(
            run.session_id for run in self._store.runs.values() if run.status is RunStatus.RUNNING
        )
        for session_id, count in running.items():
            if count > 1 and session_id is not None:
                self._violated(
                    "one_run_in_flight_per_session",
                    f"session row {session_id} has {count} running runs",
                )

    def _reserved_places_of_running_runs(self) -> None:
        """A place stays ``reserved`` only while its run runs, or until the next sweep of
        the reaper (a late reservation of a run that was reaped meanwhile lands after the
        reaper's settling, and the next one settles it)."""
        runs, now = self._store.runs, self._store.db_clock.now()
        stale = self._stale_places
        for place in self._store.ledger:
            key = (place["run_id"], place["channel_id"])
            run = runs.get(place["run_id"])
            if place["status"] is not JoinStatus.RESERVED or (
                run is not None and run.status is RunStatus.RUNNING
            ):
                stale.pop(key, None)
                continue
            since = stale.setdefault(key, now)
            if (now - since).total_seconds() > self._sweep_s:
                self._violated(
                    "join_places_add_up",
                    f"run {place['run_id']} ended, and its place of channel "
                    f"{place['channel_id']} is still reserved {self._sweep_s:.0f} s later",
                )

    def _joined_are_members(self) -> None:
        store, members = self._store, self._gateway.members
        for session_id, channels in store.joined.items():
            row = store.sessions.get(session_id)
            if row is None:
                continue
            have = members.get(row["gateway_session_id"], set())
            for channel_id in channels:
                username = store.channels[channel_id]["username"]
                if username not in have:
                    self._violated(
                        "action_rows_match_gateway",
                        f"session {row['gateway_session_id']} is recorded in @{username}, "
                        "which it never joined",
                    )

    # --- at the end -----------------------------------------------------------------------

    def _within_limits(self) -> None:
        """Within one simulated hour: a channel's joins within its pace, a session's within
        its ramp (by the gateway's first joins and by the places the ledger kept)."""
        store, settings = self._store, self._settings
        pace = settings.pool.max_joins_per_channel_per_hour
        first_joins: dict[tuple[int, str], Operation] = {}
        for operation in self._gateway.operations:
            if operation.joined:
                first_joins.setdefault((operation.session, operation.channel or ""), operation)
        per_channel = Counter(channel for _, channel in first_joins)
        per_session = Counter(session for session, _ in first_joins)
        kept = [place for place in store.ledger if place["status"] is not JoinStatus.RELEASED]
        kept_channel = Counter(place["channel_id"] for place in kept)
        for channel, count in per_channel.items():
            if count > pace:
                self._violated(
                    "join_places_add_up", f"@{channel} was joined {count} times (pace {pace})"
                )
        for channel_id, count in kept_channel.items():
            if count > pace:
                self._violated(
                    "join_places_add_up", f"channel {channel_id} kept {count} places (pace {pace})"
                )
        ramp = settings.ramp.ramp
        ages = self._ages()
        for session, count in per_session.items():
            allowed = ramp.joins_per_day(ages.get(session, 0))
            if count > allowed:
                self._violated(
                    "join_places_add_up",
                    f"session {session} joined {count} channels (its ramp allows {allowed})",
                )

    def _note_births(self) -> None:
        """When each gateway id's account was created, as the oldest of its rows says (kept
        after a removal; a gateway id registered again is the same Telegram account)."""
        born_at = self._born
        for row in self._store.sessions.values():
            born = read_time(row["account_created_at"] or row["created_at"])
            gateway_id = row["gateway_session_id"]
            if isinstance(born, datetime) and born < born_at.get(gateway_id, born + DAY):
                born_at[gateway_id] = born

    def _ages(self) -> dict[int, int]:
        now = self._store.db_clock.now()
        return {gid: max((now - born).days, 0) for gid, born in self._born.items()}

    def _tokens(self, *, final: bool) -> None:
        store, calls = self._store, self._llm.calls
        days = {call.day for call in calls}
        ledger = sum(at_once(store.tokens_spent(day)) for day in days | _days_of(store))
        used = sum(call.cost for call in calls if call.state == "done")
        budget = self._settings.llm.daily_token_budget
        for day in days:
            spent = at_once(store.tokens_spent(day))
            if spent > budget:
                self._violated(
                    "tokens_add_up", f"{day}: the ledger holds {spent} > budget {budget}"
                )
        if ledger < used:
            self._trace.violated(
                "tokens_add_up",
                f"the ledger holds {ledger} tokens, below the {used} the LLM calls used",
                key="below",
            )
        if not final:
            return
        troubled = self.token_troubled
        excused = self.lost_reserved + sum(
            call.reserved if call.state != "done" else call.reserved - call.cost
            for call in calls
            if call.state != "done" or id(call.node) in troubled
        )
        if ledger > used + excused:
            self._violated(
                "tokens_add_up",
                f"the ledger holds {ledger} tokens: the calls used {used}, and at most "
                f"{excused} more may stand reserved",
            )


def _days_of(store: SimStore) -> set[date]:
    tokens = getattr(store, "tokens", {})
    return {day for day in tokens if isinstance(day, date)}


def _context_run() -> int | None:
    run = log_fields().get("run")
    return run if isinstance(run, int) else None

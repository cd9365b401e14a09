"""One contract, three stores: ``testing.InMemoryStore``, and ``db.Repository`` on SQLite and
on PostgreSQL. Whatever the scheduler, the runner and the API rely on holds for each."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from heatup_daemon.db.models import NodeRow
from heatup_daemon.db.texts import TEXT_LIMIT
from heatup_daemon.enums import ActionKind, Clearance, Outcome, PlanSource, RunStatus, Trigger
from heatup_daemon.errors import AlreadyExists, AlreadyRunning, NotFound, SessionNotRunnable
from heatup_daemon.records import POOL_JOINS_S, ActionRecord, Decision, JoinLimits, Node, StoredPlan
from heatup_daemon.scheduling.slots import Slots
from heatup_daemon.session import SessionRecord
from heatup_daemon.stores import NodeStore
from heatup_daemon.testing import FakeClock, InMemoryStore
from heatup_daemon.validation import validate_channel
from tests.builders import join_record, session_spec
from tests.conftest import BACKENDS, empty_database, migrated_repository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NODE = Node(1, "node-a")  # the node a run is recorded with (leases: see their tests)


@pytest.fixture(params=["memory", *BACKENDS])
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """Nothing for the in-memory store, else the URL of an empty database
    (``tests/conftest.py``'s)."""
    if request.param == "memory":
        yield None
        return
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def store(backing: str | None) -> AsyncIterator[NodeStore]:
    """The in-memory store, or a repository on the empty database (with the leaked-connection
    check of ``tests/conftest.py``)."""
    if backing is None:
        yield InMemoryStore(FakeClock(NOW))
        return
    async with migrated_repository(backing) as repository:
        yield repository


async def add(
    store: NodeStore, gateway_id: int, schedule: str = "1h", **values: Any
) -> SessionRecord:
    return await store.add_session(session_spec(gateway_id, schedule, **values))


def slots() -> Slots:
    return Slots(misfire_grace_s=300, rng=random.Random(1))


async def scheduled(store: NodeStore, *gateway_ids: int) -> None:
    for gateway_id in gateway_ids:
        await add(store, gateway_id)
    while (await store.reconcile(slots(), NOW, 0, 1000)).examined:
        pass


async def test_sessions_registry(store: NodeStore) -> None:
    record = await add(store, 5)
    assert record.gateway_session_id == 5 and record.enabled is True and record.edited
    assert (await store.get_session(5)).id == record.id
    assert [r.gateway_session_id for r in await store.list_sessions()] == [5]
    with pytest.raises(AlreadyExists):
        await add(store, 5)
    with pytest.raises(NotFound):
        await store.get_session(6)


async def test_channels_registry(store: NodeStore) -> None:
    spec = validate_channel(username="@NASA", title="NASA", category="science", description=None)
    view = await store.add_channel(spec)
    assert (view.username, view.enabled, view.invalid_reason) == ("nasa", True, None)
    with pytest.raises(AlreadyExists):
        await store.add_channel(spec)
    assert [c.username for c in await store.list_channels()] == ["nasa"]
    assert await store.check_channels() == []


async def test_reconcile_decides_each_edited_row_once(store: NodeStore) -> None:
    await add(store, 1)
    await add(store, 2)
    first = await store.reconcile(slots(), NOW, 0, 1)
    assert first.examined == 1 and [d.record.gateway_session_id for d in first.decisions] == [1]
    second = await store.reconcile(slots(), NOW, first.last_id, 10)
    assert [d.record.gateway_session_id for d in second.decisions] == [2]
    again = await store.reconcile(slots(), NOW, 0, 10)
    assert again.examined == 0  # applied: nothing to look at until an admin edits
    record = await store.get_session(1)
    assert record.next_run_at == NOW and not record.edited


async def test_a_claim_moves_the_row_and_writes_its_slot_row_together(store: NodeStore) -> None:
    await scheduled(store, 1, 2)
    claim = await store.claim_due(slots(), NOW, 10, NODE)
    assert sorted(run.session.gateway_session_id for run in claim.runs) == [1, 2]
    run = claim.runs[0]
    assert (run.trigger, run.scheduled_for, run.due_at) == (Trigger.SCHEDULE, NOW, NOW)
    view = await store.get_run(run.id)
    assert (view.status, view.scheduled_for, view.next_slot_at) == (
        RunStatus.RUNNING,
        NOW,
        NOW + timedelta(hours=1),
    )
    assert (await store.get_session(1)).next_run_at == NOW + timedelta(hours=1)
    assert (await store.claim_due(slots(), NOW, 10, NODE)).decisions == ()
    assert await store.next_due_at() == NOW + timedelta(hours=1)


class MoveTo(Slots):
    """A policy that moves each row it claims to the due time given for its gateway id, and
    writes no slot row: a way to set rows due through the stores' public methods."""

    def __init__(self, dues: dict[int, datetime]) -> None:
        super().__init__(misfire_grace_s=300, rng=random.Random(1))
        self.dues = dues

    def claim(self, record: SessionRecord, running: int | None, now: datetime) -> Decision:
        due = self.dues[int(str(record.gateway_session_id))]
        return Decision(record, due, due, None, record.applied_key)


async def test_claims_take_the_most_overdue_first_up_to_the_limit(store: NodeStore) -> None:
    await scheduled(store, 1, 2, 3)
    dues = {g: NOW - timedelta(seconds=g * 10) for g in (1, 2, 3)}
    await store.claim_due(MoveTo(dues), NOW, 10, NODE)
    claim = await store.claim_due(slots(), NOW, 2, NODE)
    assert [d.record.gateway_session_id for d in claim.decisions] == [3, 2]


async def test_a_slot_meeting_a_run_in_flight_is_skipped(store: NodeStore) -> None:
    await scheduled(store, 1)
    manual = await store.start_run(1, Trigger.API, NOW, NODE)
    claim = await store.claim_due(slots(), NOW, 10, NODE)
    assert claim.runs == ()
    history = await store.history(1)
    skipped = [r for r in history if r.trigger is Trigger.SCHEDULE]
    assert [r.status for r in skipped] == [RunStatus.SKIPPED]
    assert f"run {manual.id}" in (skipped[0].error or "")


async def test_two_claimers_at_once_claim_each_slot_once(store: NodeStore) -> None:
    await scheduled(store, *range(1, 41))
    claims = await asyncio.gather(
        *(store.claim_due(slots(), NOW, 15, Node(n, f"node-{n}")) for n in range(4))
    )
    claimed = [run.session.gateway_session_id for claim in claims for run in claim.runs]
    assert sorted(claimed) == list(range(1, 41))  # every slot once: none lost, none twice
    for gateway_id in range(1, 41):
        assert len(await store.history(gateway_id)) == 1


async def test_a_claim_that_fails_midway_changes_nothing(store: NodeStore) -> None:
    await scheduled(store, 1, 2)

    class Died(BaseException):
        """The process dies between two decisions."""

    class Broken(Slots):
        calls = 0

        def claim(self, record: SessionRecord, running: int | None, now: datetime) -> Decision:
            Broken.calls += 1
            if Broken.calls == 2:
                raise Died
            return super().claim(record, running, now)

    with pytest.raises(Died):
        await store.claim_due(Broken(300, random.Random(1)), NOW, 10, NODE)
    if not isinstance(store, InMemoryStore):  # the fake has no transactions to roll back
        for gateway_id in (1, 2):
            assert (await store.get_session(gateway_id)).next_run_at == NOW
            assert await store.history(gateway_id) == []
        claim = await store.claim_due(slots(), NOW, 10, NODE)
        assert len(claim.runs) == 2


async def test_manual_starts_are_refused_with_nothing_written(store: NodeStore) -> None:
    await scheduled(store, 1, 2)
    with pytest.raises(NotFound):
        await store.start_run(9, Trigger.API, NOW, NODE)
    run = await store.start_run(1, Trigger.API, NOW, NODE)
    assert (run.session.gateway_session_id, run.trigger, run.started_at) == (1, Trigger.API, NOW)
    with pytest.raises(AlreadyRunning):
        await store.start_run(1, Trigger.CLI, NOW, NODE)
    session_id = (await store.get_session(2)).id
    await store.set_cooldown(session_id, NOW + timedelta(minutes=5), 300, NOW)
    with pytest.raises(SessionNotRunnable, match="cooling down") as refused:
        await store.start_run(2, Trigger.API, NOW, NODE)
    assert refused.value.refusal == "cooling_down"
    await store.mark_needs_attention(session_id, "session REVOKED")
    with pytest.raises(SessionNotRunnable, match="needs attention"):
        await store.start_run(2, Trigger.API, NOW + timedelta(hours=1), NODE)
    assert await store.history(2) == []


async def test_a_run_writes_its_story_and_a_reaped_run_keeps_the_reapers_end(
    store: NodeStore,
) -> None:
    await scheduled(store, 1)
    node = (await store.register_node("node-a", 60, NOW)).node
    run = await store.start_run(1, Trigger.CLI, NOW, node)
    plan = StoredPlan(PlanSource.FALLBACK, None, 0, 0, {"actions": [], "notes": []})
    await store.set_run_plan(run.id, plan)
    action = ActionRecord(1, ActionKind.IDLE, None, 5.0, 5.0, NOW, NOW, Outcome.OK)
    await store.record_action(run.id, action)
    await store.record_action(run.id, action)  # a retried write is stored once
    assert await store.start_call(run.id, in_flight(2), 10, NOW) is Clearance.CLEARED
    assert await store.reap_stale_runs(NOW, 60) == 0  # its node's lease keeps it alive
    await expire(store, node)
    assert await store.reap_stale_runs(NOW, 60) == 1
    assert await store.start_call(run.id, in_flight(3), 10, NOW) is Clearance.REAPED
    assert await store.renew_node(node, 60, NOW) is None  # the node's row went with its runs
    final = await store.finish_run(run.id, RunStatus.SUCCEEDED, None, NOW + timedelta(seconds=102))
    view = await store.get_run(run.id)
    assert final is RunStatus.INTERRUPTED and view.status is RunStatus.INTERRUPTED
    assert [a.seq for a in view.actions] == [1, 2] and view.plan_source is PlanSource.FALLBACK
    assert view.actions[1].outcome is Outcome.UNKNOWN  # the call it was cleared for


async def test_leases_are_renewed_and_released(store: NodeStore) -> None:
    a = (await store.register_node("node-a", 60, NOW)).node
    b = (await store.register_node("node-b", 60, NOW)).node
    assert a.id != b.id and (a.name, b.name) == ("node-a", "node-b")
    renewed = await store.renew_node(a, 60, NOW + timedelta(seconds=30))
    assert renewed is not None and renewed.node == a
    await store.release_node(b)
    assert await store.renew_node(b, 60, NOW) is None


async def test_the_fence_needs_a_lease_that_outlasts_the_call(store: NodeStore) -> None:
    await scheduled(store, 1)
    node = (await store.register_node("node-a", 60, NOW)).node
    run = await store.start_run(1, Trigger.CLI, NOW, node)
    assert await store.start_call(run.id, in_flight(1), 61, NOW) is Clearance.LEASE_SHORT
    assert (await store.get_run(run.id)).actions == ()  # refused: nothing written
    assert await store.start_call(run.id, in_flight(1), 30, NOW) is Clearance.CLEARED
    assert [a.error_code for a in (await store.get_run(run.id)).actions] == ["in_flight"]


async def test_heatups_own_texts_are_clipped_where_they_enter_the_store(store: NodeStore) -> None:
    await scheduled(store, 1)
    session_id = (await store.get_session(1)).id
    run = await store.start_run(1, Trigger.CLI, NOW, NODE)
    long = "x" * (TEXT_LIMIT + 100)
    failed = ActionRecord(1, ActionKind.BROWSE_DIALOGS, None, 1.0, 1.0, NOW, NOW, Outcome.FAILED)
    await store.record_action(run.id, replace(failed, error_code="transient", error_text=long))
    await store.finish_run(run.id, RunStatus.FAILED, long, NOW)
    await store.mark_needs_attention(session_id, long)
    view = await store.get_run(run.id)
    assert view.error == long[:TEXT_LIMIT]
    assert view.actions[0].error_text == long[:TEXT_LIMIT]
    assert (await store.get_session(1)).state_reason == long[:TEXT_LIMIT]


def in_flight(seq: int) -> ActionRecord:
    return ActionRecord(
        seq, ActionKind.BROWSE_DIALOGS, None, None, None, NOW, NOW, Outcome.UNKNOWN, "in_flight"
    )


async def expire(store: NodeStore, node: Node) -> None:
    """The node renews no more, and its lease has run out (on the store's clock)."""
    if isinstance(store, InMemoryStore):
        store.leases[node.id] = NOW - timedelta(seconds=1)
        return
    moment = store.shared_now(NOW, -1)
    async with store.engine.begin() as connection:
        await connection.execute(
            update(NodeRow).where(NodeRow.id == node.id).values(lease_until=moment)
        )


async def test_the_prompt_tells_of_finished_runs_only(store: NodeStore) -> None:
    await scheduled(store, 1)
    first = await store.start_run(1, Trigger.CLI, NOW, NODE)
    await store.finish_run(first.id, RunStatus.SUCCEEDED, None, NOW + timedelta(minutes=1))
    planning = await store.start_run(1, Trigger.API, NOW + timedelta(minutes=2), NODE)
    facts = await store.planning_facts(planning.session, NOW + timedelta(minutes=2))
    assert [run.status for run in facts.recent_runs] == ["succeeded"]  # not the one planned


async def test_refusals_and_counts(store: NodeStore) -> None:
    await scheduled(store, 1, 2)
    two = await store.get_session(2)
    await store.mark_needs_attention(two.id, "session frozen")
    refused = await store.refusals(frozenset({(await store.get_session(1)).id, two.id, 999}), NOW)
    assert set(refused) == {two.id, 999}
    assert refused[two.id][0] == "needs_attention" and "needs attention" in refused[two.id][1]
    assert refused[999][0] == "removed"
    counts = await store.counts(NOW)
    assert (counts.sessions, counts.active, counts.needs_attention) == (2, 1, 1)
    assert counts.cooling_down == 0
    one = await store.get_session(1)
    await store.set_cooldown(one.id, NOW + timedelta(minutes=5), 300, NOW)
    assert (await store.counts(NOW)).cooling_down == 1
    assert (await store.counts(NOW + timedelta(minutes=6))).cooling_down == 0


async def test_history_retention_and_the_token_ledger(store: NodeStore) -> None:
    await scheduled(store, 1)
    old = await store.start_run(1, Trigger.CLI, NOW - timedelta(days=40), NODE)
    await store.finish_run(old.id, RunStatus.SUCCEEDED, None, NOW - timedelta(days=40))
    await store.start_run(1, Trigger.CLI, NOW, NODE)  # running: never deleted
    assert await store.delete_history(NOW - timedelta(days=30), 100) == 1
    assert len(await store.history(1)) == 1
    day = NOW.date()
    assert await store.reserve_tokens("plan-1", day, 500, 10_000)
    assert await store.reserve_tokens("plan-2", day, 250, 10_000)
    assert (await store.tokens_spent(day), await store.tokens_spent(date_after(day))) == (750, 0)


def date_after(day: Any) -> Any:
    return day + timedelta(days=1)


async def test_the_join_ledger_keeps_the_ramp_and_the_pace(store: NodeStore) -> None:
    for name in ("nasa", "espn", "bbcnews"):
        spec = validate_channel(username=name, title=None, category=None, description=None)
        await store.add_channel(spec)
    await scheduled(store, 1, 2, 3)
    one = await store.start_run(1, Trigger.CLI, NOW, NODE)
    limits = JoinLimits(per_day=2, per_channel_hour=2)
    verdicts = await store.reserve_joins(one, ["nasa", "espn", "bbcnews", "gone"], limits, NOW)
    assert verdicts == {"nasa": None, "espn": None, "bbcnews": "ramp", "gone": "gone"}
    two = await store.start_run(2, Trigger.CLI, NOW, NODE)
    assert await store.reserve_joins(two, ["nasa"], limits, NOW) == {"nasa": None}
    three = await store.start_run(3, Trigger.CLI, NOW, NODE)
    later = NOW + timedelta(minutes=30)
    assert await store.reserve_joins(three, ["nasa"], limits, later) == {"nasa": "channel_pace"}
    # A join that did not happen gives its place back; one that did keeps it, and the
    # session counts the channel as joined.
    await store.record_join(one, join_record(1, "nasa", Outcome.FAILED, NOW))
    await store.record_join(one, join_record(2, "espn", Outcome.OK, NOW))
    assert await store.reserve_joins(three, ["nasa"], limits, later) == {"nasa": None}
    assert (await store.planning_facts(one.session, later)).joined == {"espn"}
    assert [a.outcome for a in (await store.get_run(one.id)).actions] == [
        Outcome.FAILED,
        Outcome.OK,
    ]
    facts = await store.planning_facts(three.session, later)
    assert facts.channel_joins_last_hour == {"nasa": 2, "espn": 1}
    # The run's end releases what it reserved and never reached (the pool's joins are
    # counted once for the plans of a few seconds: read them once those have passed).
    await store.finish_run(three.id, RunStatus.INTERRUPTED, "stopped", later)
    facts = await store.planning_facts(one.session, later + POOL_JOINS_S)
    assert (facts.joins_last_24h, facts.channel_joins_last_hour) == (1, {"nasa": 1, "espn": 1})
    warmth = await store.warmth_facts(one.session.id, later)
    assert (warmth.joins_last_24h, warmth.joins_last_7d) == (1, 1)
    # An hour on, the channel has room again; a day on, the account too.
    hour_on = await store.planning_facts(one.session, NOW + timedelta(minutes=61))
    assert hour_on.channel_joins_last_hour == {}


async def test_plans_share_the_pools_counts_and_the_reservation_decides(
    store: NodeStore,
) -> None:
    spec = validate_channel(username="nasa", title=None, category=None, description=None)
    await store.add_channel(spec)
    await scheduled(store, 1, 2)
    one = await store.start_run(1, Trigger.CLI, NOW, NODE)
    two = await store.start_run(2, Trigger.CLI, NOW, NODE)
    limits = JoinLimits(per_day=5, per_channel_hour=1)
    before = await store.planning_facts(two.session, NOW)
    assert before.channel_joins_last_hour.get("nasa", 0) == 0
    assert await store.reserve_joins(one, ["nasa"], limits, NOW) == {"nasa": None}
    # A plan made a moment later may still see the room the first one took (the pool's
    # joins are counted once per POOL_JOINS_S): the reservation, never the plan, decides.
    soon = await store.planning_facts(two.session, NOW + timedelta(seconds=1))
    assert soon.channel_joins_last_hour.get("nasa", 0) in (0, 1)
    assert await store.reserve_joins(two, ["nasa"], limits, NOW) == {"nasa": "channel_pace"}
    fresh = await store.planning_facts(two.session, NOW + POOL_JOINS_S)
    assert fresh.channel_joins_last_hour == {"nasa": 1}


async def test_two_nodes_never_both_take_a_channels_last_place(store: NodeStore) -> None:
    spec = validate_channel(username="nasa", title=None, category=None, description=None)
    await store.add_channel(spec)
    await scheduled(store, *range(1, 9))
    runs = [await store.start_run(g, Trigger.CLI, NOW, NODE) for g in range(1, 9)]
    limits = JoinLimits(per_day=5, per_channel_hour=3)
    verdicts = await asyncio.gather(
        *(store.reserve_joins(run, ["nasa"], limits, NOW) for run in runs)
    )
    granted = [v for v in verdicts if v["nasa"] is None]
    assert len(granted) == 3  # exactly the pace, however the reservations raced


async def test_sessions_aged_counts_from_the_account_or_the_registration(store: NodeStore) -> None:
    # Each store stamps created_at with its own clock (a database with the server's): the
    # ages are judged from an hour after that registration, whatever today's date is.
    registered = (await add(store, 3)).created_at  # registered now: day 0
    assert isinstance(registered, datetime)
    moment = registered + timedelta(hours=1)
    await add(store, 1, account_created_at=moment - timedelta(days=40))
    await add(store, 2, account_created_at=moment - timedelta(days=2))
    assert await store.sessions_aged(moment, [0, 1, 3, 30]) == [3, 2, 1, 1]


async def ledger_of(store: NodeStore) -> tuple[Any, ...]:
    """Two pool channels, two sessions with a run each."""
    for name in ("nasa", "espn"):
        spec = validate_channel(username=name, title=None, category=None, description=None)
        await store.add_channel(spec)
    await scheduled(store, 1, 2)
    node = (await store.register_node("node-a", 60, NOW)).node
    one = await store.start_run(1, Trigger.CLI, NOW, node)
    two = await store.start_run(2, Trigger.CLI, NOW, node)
    return node, one, two


async def held(store: NodeStore, run: Any) -> int:
    """The session's places that count for its ramp (reserved or joined)."""
    return (await store.planning_facts(run.session, NOW)).joins_last_24h


async def test_a_retried_reservation_changes_nothing(store: NodeStore) -> None:
    _, one, _ = await ledger_of(store)
    limits = JoinLimits(per_day=1, per_channel_hour=1)
    first = await store.reserve_joins(one, ["nasa"], limits, NOW)
    again = await store.reserve_joins(one, ["nasa"], limits, NOW)  # its commit's answer lost
    assert first == again == {"nasa": None}  # the same verdict, not "ramp" against itself
    assert await held(store, one) == 1
    facts = await store.planning_facts(one.session, NOW)
    assert facts.channel_joins_last_hour == {"nasa": 1}


async def test_a_removed_sessions_run_reserves_no_join(store: NodeStore) -> None:
    _, one, _ = await ledger_of(store)
    limits = JoinLimits(per_day=5, per_channel_hour=5)
    assert await store.reserve_joins(one, ["nasa"], limits, NOW) == {"nasa": None}
    await store.remove_session(1)  # while its run is in flight: the ramp it had is gone
    verdicts = await store.reserve_joins(one, ["espn"], limits, NOW)
    assert verdicts == {"espn": "session_removed"}
    assert (await store.planning_facts(one.session, NOW)).channel_joins_last_hour == {"nasa": 1}


def join_in_flight(channel: str) -> ActionRecord:
    return ActionRecord(
        1, ActionKind.JOIN_CHANNEL, channel, None, None, NOW, NOW, Outcome.UNKNOWN, "in_flight"
    )


async def test_a_run_that_ends_gives_back_the_places_it_never_used(store: NodeStore) -> None:
    _, one, two = await ledger_of(store)
    limits = JoinLimits(per_day=5, per_channel_hour=5)
    await store.reserve_joins(one, ["nasa", "espn"], limits, NOW)
    await store.reserve_joins(two, ["nasa", "espn"], limits, NOW)
    # Run two was cut during its join of nasa: the join may have happened.
    assert await store.start_call(two.id, join_in_flight("nasa"), 10, NOW) is Clearance.CLEARED
    await store.finish_run(one.id, RunStatus.FAILED, "before its joins", NOW)
    await store.finish_run(two.id, RunStatus.INTERRUPTED, "stopped", NOW)
    assert await held(store, one) == 0  # never tried: given back
    assert await held(store, two) == 1  # in flight: kept; espn, never tried: given back


async def test_a_reaped_run_gives_back_its_places_unless_a_join_was_in_flight(
    store: NodeStore,
) -> None:
    node, one, two = await ledger_of(store)
    limits = JoinLimits(per_day=5, per_channel_hour=5)
    await store.reserve_joins(one, ["nasa", "espn"], limits, NOW)
    await store.reserve_joins(two, ["espn"], limits, NOW)
    assert await store.start_call(one.id, join_in_flight("espn"), 10, NOW) is Clearance.CLEARED
    await expire(store, node)  # the process died with both runs in flight
    assert await store.reap_stale_runs(NOW, 60) == 2
    assert await held(store, one) == 1  # espn may have happened: kept
    assert await held(store, two) == 0
    # The run's own end, written late, changes nothing more.
    await store.finish_run(one.id, RunStatus.SUCCEEDED, None, NOW)
    assert await held(store, one) == 1


async def test_a_dead_nodes_successor_ends_its_runs_and_lease_at_once(store: NodeStore) -> None:
    node, one, two = await ledger_of(store)
    await scheduled(store, 3)
    other = (await store.register_node("node-b", 60, NOW)).node
    three = await store.start_run(3, Trigger.CLI, NOW, other)
    limits = JoinLimits(per_day=5, per_channel_hour=5)
    await store.reserve_joins(one, ["nasa", "espn"], limits, NOW)
    await store.reserve_joins(two, ["espn"], limits, NOW)
    assert await store.start_call(one.id, join_in_flight("espn"), 10, NOW) is Clearance.CLEARED
    # The process is gone, its lease still runs: a node of this id with another name is
    # another database's, and is left alone.
    assert await store.end_dead_node(Node(node.id, "node-z"), NOW) == 0
    assert await store.end_dead_node(node, NOW) == 2
    for run in (one, two):
        view = await store.get_run(run.id)
        assert view.status is RunStatus.INTERRUPTED and "successor" in (view.error or "")
    assert (await store.get_run(three.id)).status is RunStatus.RUNNING  # another node's
    assert await store.renew_node(node, 60, NOW) is None  # its lease went with its runs
    assert await held(store, one) == 1 and await held(store, two) == 0  # as a reap settles
    assert await store.end_dead_node(node, NOW) == 0  # a second successor changes nothing
    assert await store.renew_node(other, 60, NOW) is not None


async def test_a_removed_sessions_run_still_gives_back_its_places(store: NodeStore) -> None:
    _, one, two = await ledger_of(store)
    limits = JoinLimits(per_day=5, per_channel_hour=1)
    await store.reserve_joins(one, ["nasa"], limits, NOW)
    assert await store.reserve_joins(two, ["nasa"], limits, NOW) == {"nasa": "channel_pace"}
    await store.remove_session(1)
    final = await store.finish_run(one.id, RunStatus.INTERRUPTED, "removed", NOW)
    assert final is RunStatus.INTERRUPTED  # its own end, not taken for the reaper's
    assert await store.reserve_joins(two, ["nasa"], limits, NOW) == {"nasa": None}


async def test_refusals_of_any_number_of_runs_in_flight(store: NodeStore) -> None:
    await scheduled(store, 1)
    live = (await store.get_session(1)).id
    # As many as scheduler.max_concurrent_runs allows, past SQLite's 32,766 bound values.
    asked = frozenset(range(live + 1, live + 100_001)) | {live}
    refused = await store.refusals(asked, NOW)
    assert len(refused) == 100_000 and live not in refused


async def test_token_reservations_never_overshoot_the_budget(store: NodeStore) -> None:
    day = NOW.date()
    keys = [f"plan-{n}" for n in range(20)]
    fits = await asyncio.gather(*(store.reserve_tokens(key, day, 100, 550) for key in keys))
    assert sum(fits) == 5 and await store.tokens_spent(day) == 500
    assert not await store.reserve_tokens("big", day, 600, 550)  # more than the budget at all
    granted = [key for key, fit in zip(keys, fits, strict=True) if fit]
    await store.settle_tokens(granted[0], 20)  # a plan cost less than it reserved
    assert await store.reserve_tokens("next", day, 100, 550)
    assert await store.tokens_spent(day) == 520


async def test_a_settlement_counts_once_however_often_it_is_asked(store: NodeStore) -> None:
    day = NOW.date()
    assert await store.reserve_tokens("plan", day, 1_000, 10_000)
    for _ in range(3):  # its answer lost twice: asked again
        await store.settle_tokens("plan", 1_200)
    await store.settle_tokens("refused", 0)  # never reserved: nothing to give back
    assert await store.tokens_spent(day) == 1_200
    # Retention takes settlements with the history.
    await store.delete_history(NOW + timedelta(days=2), 100)
    assert await store.reserve_tokens("plan", day, 100, 10_000)  # the key is free again

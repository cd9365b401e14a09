"""The scheduler's promises on a real database (SQLite and PostgreSQL), with a scripted
gateway and a fake clock: slots, restarts, admin edits, cooldowns, bounds, two claimers."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text, update

from heatup_daemon.config.settings import Settings
from heatup_daemon.db.models import NodeRow, SessionRow
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import ActionKind, Clearance, Outcome, RunStatus, Trigger
from heatup_daemon.records import ActionRecord, Decision
from heatup_daemon.scheduling.slots import Slots
from heatup_daemon.session import SessionRecord, validate_record
from heatup_daemon.testing import FakeGateway
from tests.worlds import START, World, WorldNode, quick_settings

IN_FLIGHT = ActionRecord(
    seq=1,
    kind=ActionKind.BROWSE_DIALOGS,
    channel=None,
    planned_duration_s=None,
    actual_duration_s=None,
    started_at=START,
    finished_at=START,
    outcome=Outcome.UNKNOWN,
    error_code="in_flight",
)


class Integration(World):
    """heatup on a real database."""

    store: Repository

    @property
    def repository(self) -> Repository:
        return self.store

    async def runs(self, gateway_id: int) -> list[tuple[str, datetime | None]]:
        history = await self.repository.history(gateway_id, limit=100)
        return [(run.status, run.scheduled_for) for run in reversed(history)]

    async def sql(self, statement: str, **params: object) -> None:
        async with self.repository.engine.begin() as connection:
            await connection.execute(text(statement), params)

    async def expire(self, node: WorldNode) -> None:
        """The node renews no more, and its lease has run out (on the database's clock)."""
        moment = self.repository.shared_now(self.clock.now(), -1)
        async with self.repository.engine.begin() as connection:
            await connection.execute(
                update(NodeRow).where(NodeRow.id == node.lease.node.id).values(lease_until=moment)
            )


@pytest.fixture
async def world(repository: Repository) -> Integration:
    await repository.seed_channels(Settings().channels)
    world = Integration(repository)
    await world.node("node-a")
    return world


async def test_a_new_session_runs_now_and_then_every_period(world: Integration) -> None:
    await world.add(1, "1h")
    await world.scheduler.prepare()
    view = await world.repository.get_session(1)
    assert view.next_run_at == START
    assert await world.tick() == 1
    assert await world.tick() == 0  # not due again
    world.clock.advance(3600)
    assert await world.tick() == 1
    assert await world.runs(1) == [("succeeded", START), ("succeeded", START + timedelta(hours=1))]
    assert (await world.repository.get_session(1)).next_run_at == START + timedelta(hours=2)


async def test_jitter_delays_the_first_run_within_the_window(world: Integration) -> None:
    await world.add(2, "1h", jitter=600)
    await world.scheduler.prepare()
    due = (await world.repository.get_session(2)).next_run_at
    assert due is not None and START <= due < START + timedelta(seconds=600)
    if due > START:
        assert await world.tick() == 0
    world.clock.advance((due - START).total_seconds())
    assert await world.tick() == 1


async def test_restart_skips_long_missed_slots_without_a_stampede(world: Integration) -> None:
    for gateway_id in (11, 12, 13):
        await world.add(gateway_id, "1h")
    await world.add(14, "1d")
    await world.scheduler.prepare()
    await world.tick()  # everyone's first run
    # The daemon is down for 5 h 10 min: 11-13 missed five slots, 14 none.
    world.clock.advance(5 * 3600 + 600)
    restarted = await world.node("node-a")
    await restarted.scheduler.prepare()
    assert await world.tick() == 0  # past the grace: skipped, not run, not all at once
    for gateway_id in (11, 12, 13):
        runs = await world.runs(gateway_id)
        assert runs == [("succeeded", START), ("skipped", START + timedelta(hours=1))]
        view = await world.repository.get_session(gateway_id)
        assert view.next_run_at == START + timedelta(hours=6)  # on the grid, after now
    assert await world.runs(14) == [("succeeded", START)]


async def test_slots_missed_within_the_grace_coalesce_into_one_run(world: Integration) -> None:
    world.settings = quick_settings(misfire_grace_s=3600)
    await world.node("node-a")
    await world.add(21, "10m")
    await world.scheduler.prepare()
    await world.tick()
    world.clock.advance(35 * 60)  # three slots missed, the oldest 25 min late
    assert await world.tick() == 1
    runs = await world.runs(21)
    assert runs == [
        ("succeeded", START),
        ("succeeded", START + timedelta(minutes=10)),
        ("skipped", START + timedelta(minutes=20)),  # 20 and 30 coalesced into that run
    ]
    view = await world.repository.get_session(21)
    assert view.next_run_at == START + timedelta(minutes=40)


async def test_cooldown_moves_to_the_first_slot_after_it(world: Integration) -> None:
    await world.add(31, "10m")
    await world.scheduler.prepare()
    view = await world.repository.get_session(31)
    await world.repository.set_cooldown(view.id, START + timedelta(minutes=25), 1500, START)
    assert await world.tick() == 0
    assert (await world.repository.get_session(31)).next_run_at == START + timedelta(minutes=30)
    world.clock.advance(30 * 60)
    assert await world.tick() == 1


async def test_at_most_max_concurrent_runs_start_in_due_order(world: Integration) -> None:
    world.settings = quick_settings(max_concurrent_runs=2)
    await world.node("node-a")
    for offset, gateway_id in enumerate((41, 42, 43, 44, 45)):
        view = await world.add(gateway_id, "1h")
        await world.scheduler.prepare()
        due = START - timedelta(seconds=4 - 0.5 * offset)  # due in this order, seconds ago
        async with world.repository.engine.begin() as connection:
            await connection.execute(
                update(SessionRow)
                .where(SessionRow.id == view.id)
                .values(next_run_at=due, next_nominal_at=due)
            )
    started = await world.scheduler.dispatch()
    assert started == 2 and len(world.in_flight) == 2
    assert await world.scheduler.dispatch() == 0  # full: the rest wait
    await world.settle()
    assert await world.tick() == 2
    assert await world.tick() == 1
    order = []
    for gateway_id in (41, 42, 43, 44, 45):
        runs = await world.repository.history(gateway_id)
        order.append((runs[0].started_at, gateway_id))
    assert [g for _, g in sorted(order)][:2] == [41, 42]


async def test_two_claimers_run_each_slot_once(world: Integration) -> None:
    for gateway_id in range(51, 71):
        await world.add(gateway_id, "1h")
    await world.scheduler.prepare()
    this, other = world.scheduler, (await world.node("node-b")).scheduler
    first, second = await asyncio.gather(this.dispatch(), other.dispatch())
    await world.settle()
    assert first + second == 20
    for gateway_id in range(51, 71):
        assert await world.runs(gateway_id) == [("succeeded", START)]


async def test_bad_rows_are_flagged_once_and_others_go_on(
    world: Integration, caplog: pytest.LogCaptureFixture
) -> None:
    await world.add(81, "1h")
    await world.sql(
        "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, enabled, "
        "state) VALUES (82, 'every now and then', 0, 'UTC', true, 'active'), "
        "(83, '1h', 0, 'Mars/Olympus', true, 'active')"
    )
    caplog.set_level(logging.WARNING)
    await world.scheduler.prepare()
    await world.scheduler.reconcile()
    views = {v.gateway_session_id: v for v in await world.repository.list_sessions()}
    assert "neither an interval" in (views[82].invalid_reason or "")
    assert "Mars/Olympus" in (views[83].invalid_reason or "")
    assert views[81].invalid_reason is None and views[81].next_run_at is not None
    flagged = [r for r in caplog.records if "is not usable" in r.getMessage()]
    assert len(flagged) == 2  # once each, though reconciled twice
    assert await world.tick() == 1
    # The admin fixes a row: it is scheduled at the next reconcile.
    await world.sql("UPDATE sessions SET timezone = 'Asia/Tokyo' WHERE gateway_session_id = 83")
    await world.scheduler.reconcile()
    fixed = await world.repository.get_session(83)
    assert fixed.invalid_reason is None and fixed.next_run_at is not None


async def test_admin_schedule_edits_take_effect_at_reconcile(world: Integration) -> None:
    await world.add(91, "1d")
    await world.scheduler.prepare()
    await world.tick()
    assert (await world.repository.get_session(91)).next_run_at == START + timedelta(days=1)
    await world.sql("UPDATE sessions SET schedule = '30m' WHERE gateway_session_id = 91")
    assert await world.tick() == 0  # edited, not yet reconciled: not dispatched
    await world.scheduler.reconcile()
    assert (await world.repository.get_session(91)).next_run_at == START
    await world.sql("UPDATE sessions SET label = 'renamed' WHERE gateway_session_id = 91")
    await world.scheduler.reconcile()
    assert (await world.repository.get_session(91)).next_run_at == START  # label: no move
    await world.sql("UPDATE sessions SET enabled = false WHERE gateway_session_id = 91")
    await world.scheduler.reconcile()
    assert (await world.repository.get_session(91)).next_run_at is None
    await world.sql("DELETE FROM sessions WHERE gateway_session_id = 91")
    await world.scheduler.reconcile()
    assert await world.tick() == 0


async def test_disabling_cancels_the_run_in_flight(repository: Repository) -> None:
    blocker = asyncio.Event()

    class SlowGateway(FakeGateway):
        async def _call(self, operation: str, gateway_id: int, channel: str | None) -> None:
            await blocker.wait()

    await repository.seed_channels(Settings().channels)
    world = Integration(repository, gateway=SlowGateway())
    await world.node("node-a")
    await world.add(101, "1h")
    await world.scheduler.prepare()
    assert await world.scheduler.dispatch() == 1
    for _ in range(50):
        await asyncio.sleep(0)
    await world.sql("UPDATE sessions SET enabled = false WHERE gateway_session_id = 101")
    await world.scheduler.reconcile()
    await world.settle()
    runs = await world.repository.history(101)
    assert runs[0].status == "interrupted"


async def test_a_scheduled_slot_meets_a_run_in_flight(world: Integration) -> None:
    view = await world.add(111, "1h")
    await world.scheduler.prepare()
    await world.sql(
        "INSERT INTO warmup_runs (session_id, gateway_session_id, trigger, due_at, status, node, "
        "started_at) VALUES (:id, 111, 'api', :now, 'running', 'node-a', :now)",
        id=view.id,
        now=START.replace(tzinfo=None),
    )
    assert await world.tick() == 0  # the slot is recorded skipped, nothing starts
    statuses = [status for status, _ in await world.runs(111)]
    assert statuses == ["running", "skipped"]
    skipped = (await world.repository.history(111))[0]
    assert "in flight" in (skipped.error or "")


async def test_the_runs_of_a_node_whose_lease_ran_out_are_reaped(world: Integration) -> None:
    await world.add(121, "1h")
    await world.add(122, "1h")
    dying, live = await world.node("node-z"), world.nodes[0]
    dead = await world.repository.start_run(121, Trigger.CLI, START, dying.lease.node)
    alive = await world.repository.start_run(122, Trigger.CLI, START, live.lease.node)
    await world.expire(dying)
    assert await live.scheduler.reap() == 1
    assert (await world.repository.get_run(dead.id)).status == "interrupted"
    assert "lease ran out" in ((await world.repository.get_run(dead.id)).error or "")
    assert (await world.repository.get_run(alive.id)).status == "running"
    assert await live.scheduler.reap() == 0  # the dead node's row went with its runs


async def test_runs_from_before_leases_are_reaped_by_their_heartbeat(world: Integration) -> None:
    view = await world.add(123, "1h")
    await world.sql(
        "INSERT INTO warmup_runs (session_id, gateway_session_id, trigger, due_at, status, node, "
        "started_at, heartbeat_at) VALUES (:id, 123, 'cli', :t, 'running', 'node-z', :t, :t)",
        id=view.id,
        t=(START - timedelta(minutes=5)).replace(tzinfo=None),  # stale on either clock
    )
    assert await world.scheduler.reap() == 1


async def test_a_reaped_run_keeps_its_end_and_is_fenced(world: Integration) -> None:
    await world.add(131, "1h")
    dying = await world.node("node-z")
    run = await world.repository.start_run(131, Trigger.CLI, START, dying.lease.node)
    await world.expire(dying)
    assert await world.nodes[0].scheduler.reap() == 1
    clearance = await world.repository.start_call(run.id, IN_FLIGHT, 10, world.clock.now())
    assert clearance is Clearance.REAPED
    assert (await world.repository.get_run(run.id)).actions == ()  # the fence wrote nothing
    final = await world.repository.finish_run(run.id, RunStatus.SUCCEEDED, None, START)
    assert final is RunStatus.INTERRUPTED
    assert (await world.repository.get_run(run.id)).status == "interrupted"


async def test_the_fence_asks_for_a_lease_that_outlasts_the_call(world: Integration) -> None:
    await world.add(132, "1h")
    node = world.nodes[0]
    run = await world.repository.start_run(132, Trigger.CLI, START, node.lease.node)
    now = world.clock.now()
    budget_s = world.settings.scheduler.stale_run_s + 1  # longer than any lease
    assert await world.repository.start_call(run.id, IN_FLIGHT, budget_s, now) is (
        Clearance.LEASE_SHORT
    )
    assert await world.repository.start_call(run.id, IN_FLIGHT, 10, now) is Clearance.CLEARED
    [written] = (await world.repository.get_run(run.id)).actions
    assert (written.seq, written.outcome, written.error_code) == (1, "unknown", "in_flight")


async def test_bad_channel_rows_are_flagged_once_and_never_planned(
    world: Integration, caplog: pytest.LogCaptureFixture
) -> None:
    await world.sql(
        "INSERT INTO channels (username, enabled) VALUES ('x''y_z', true), ('@Handmade_Chan', true)"
    )
    caplog.set_level(logging.WARNING)
    await world.scheduler.reconcile()
    await world.scheduler.reconcile()
    flags = {c.username: c.invalid_reason for c in await world.repository.list_channels()}
    assert "not a public username" in (flags["x'y_z"] or "")
    assert "must be stored as 'handmade_chan'" in (flags["@Handmade_Chan"] or "")
    assert flags["telegram"] is None
    assert len([r for r in caplog.records if "channel row" in r.getMessage()]) == 2
    view = await world.add(141, "1h")
    facts = await world.repository.planning_facts(validate_record(view, START), START)
    assert {"x'y_z", "@Handmade_Chan"}.isdisjoint(c.username for c in facts.pool)
    await world.sql(
        "UPDATE channels SET username = 'handmade_chan' WHERE username = '@Handmade_Chan'"
    )
    await world.scheduler.reconcile()
    flags = {c.username: c.invalid_reason for c in await world.repository.list_channels()}
    assert flags["handmade_chan"] is None  # fixed by the admin: usable again


class BreaksOneRow(Slots):
    """The scheduler's policy, except that session 52's slot row breaks a constraint of the
    database (its next slot is not after its own), as a wrong decision would."""

    def claim(self, record: SessionRecord, running_run_id: int | None, now: datetime) -> Decision:
        decision = super().claim(record, running_run_id, now)
        if record.gateway_session_id != 52:
            return decision
        rows = tuple(replace(row, next_slot_at=row.scheduled_for) for row in decision.rows)
        return replace(decision, rows=rows)


async def test_a_decision_the_database_refuses_holds_up_no_other_row(world: Integration) -> None:
    breaking = await world.node("node-a", policy=BreaksOneRow(300, random.Random(1)))
    for gateway_id in (51, 52, 53):
        await world.add(gateway_id, "1h")
    await world.scheduler.prepare()
    assert await world.tick() == 2  # 51 and 53 run; 52's refused decision stopped no one
    assert [run[0] for run in await world.runs(51)] == ["succeeded"]
    assert await world.runs(52) == []
    flagged = await world.repository.get_session(52)
    assert flagged.next_run_at is None
    assert flagged.invalid_reason is not None
    assert "the database refused this row's next slot" in flagged.invalid_reason
    assert "next_slot_after" in flagged.invalid_reason  # the constraint, named
    assert breaking.sample("heatup_slot_decisions_refused_total") == 1
    # The next reconcile decides the row again; with a sound decision it runs.
    await world.node("node-a")
    await world.scheduler.reconcile()
    again = await world.repository.get_session(52)
    assert (again.invalid_reason, again.next_run_at) == (None, START)
    assert await world.tick() == 1


async def refuse_action_rows(world: Integration) -> None:
    """From now on the database refuses every new action row, as a full disk, a broken
    column or a hand-made trigger would."""
    if world.repository.dialect == "sqlite":
        await world.sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON warmup_actions "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        return
    await world.sql(
        "CREATE FUNCTION refuse() RETURNS trigger AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
    )
    await world.sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON warmup_actions "
        "FOR EACH ROW EXECUTE FUNCTION refuse()"
    )


async def test_a_write_the_database_refuses_fails_the_run_and_is_fatal_if_it_lasts(
    world: Integration,
) -> None:
    await world.add(151, "1m")
    await world.scheduler.prepare()
    await refuse_action_rows(world)
    assert await world.tick() == 1  # not retried: the run ends at once
    [run] = await world.repository.history(151)
    assert run.status == "failed" and run.error is not None
    assert "the database refused a statement" in run.error and "refused by the test" in run.error
    assert world.fatal == []  # once is no reason to stop
    world.clock.advance(61)  # a minute on, the next run meets the same defect
    assert await world.tick() == 1
    assert [r.status for r in await world.repository.history(151)] == ["failed", "failed"]
    assert len(world.fatal) == 1  # a broken process: systemd restarts it

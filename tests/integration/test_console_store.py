"""What the web console reads, on SQLite and PostgreSQL: the pool at a glance, the session
list in every order with pages, and the channel pool's use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import Outcome, RunStatus, Trigger
from heatup_daemon.records import JoinLimits, Node, SessionSort
from heatup_daemon.validation import validate_channel
from tests.builders import join_record, session_spec

NOW = datetime.now(UTC).replace(microsecond=0)
NODE = Node(1, "n")


async def sql(repository: Repository, statement: str) -> None:
    async with repository.engine.begin() as connection:
        await connection.execute(text(statement))


async def pool_of(repository: Repository, count: int) -> None:
    for gateway_id in range(1, count + 1):
        await repository.add_session(session_spec(gateway_id))


async def test_the_pool_at_a_glance(repository: Repository) -> None:
    await pool_of(repository, 5)
    await sql(repository, "UPDATE sessions SET enabled = false WHERE gateway_session_id = 2")
    await sql(
        repository,
        "UPDATE sessions SET state = 'needs_attention', state_reason = 'frozen' "
        "WHERE gateway_session_id = 3",
    )
    await sql(repository, "UPDATE sessions SET invalid_reason = 'bad' WHERE gateway_session_id = 4")
    finished = await repository.start_run(5, Trigger.API, NOW - timedelta(hours=1), NODE)
    await repository.finish_run(finished.id, RunStatus.FAILED, "x", NOW - timedelta(minutes=59))
    await repository.start_run(5, Trigger.API, NOW, NODE)  # in flight
    old = await repository.start_run(1, Trigger.CLI, NOW - timedelta(hours=30), NODE)
    await repository.finish_run(old.id, RunStatus.SUCCEEDED, None, NOW - timedelta(hours=30))
    await repository.set_cooldown(old.session.id, NOW + timedelta(hours=1), 3600, NOW)
    due = NOW + timedelta(minutes=7)
    await sql(
        repository,
        f"UPDATE sessions SET next_run_at = '{due:%Y-%m-%d %H:%M:%S}.000000' "
        "WHERE gateway_session_id = 5",
    )
    overview = await repository.overview(NOW)
    counts = overview.sessions
    assert (counts.sessions, counts.active, counts.cooling_down) == (5, 2, 1)
    assert (counts.disabled, counts.needs_attention, counts.invalid) == (1, 1, 1)
    assert counts.running == 1
    assert overview.runs_last_24h == {"failed": 1, "running": 1}  # the 30 h old run is out
    assert overview.next_due_at == due


async def gateway_ids(repository: Repository, sort: SessionSort, descending: bool) -> list[int]:
    page = await repository.session_page(sort, descending, 0, 100)
    return [int(str(line.record.gateway_session_id)) for line in page.lines]


async def test_the_session_list_sorts_and_pages(repository: Repository) -> None:
    await pool_of(repository, 6)
    await sql(
        repository, "UPDATE sessions SET invalid_reason = 'b: bad' WHERE gateway_session_id = 2"
    )
    await sql(repository, "UPDATE sessions SET enabled = false WHERE gateway_session_id = 3")
    await sql(
        repository,
        "UPDATE sessions SET state = 'needs_attention', state_reason = 'a: gone' "
        "WHERE gateway_session_id = 4",
    )
    for gateway_id, minutes in ((5, 30), (6, 10), (1, 20)):
        at = NOW + timedelta(minutes=minutes)
        await sql(
            repository,
            f"UPDATE sessions SET next_run_at = '{at:%Y-%m-%d %H:%M:%S}.000000' "
            f"WHERE gateway_session_id = {gateway_id}",
        )
    assert await gateway_ids(repository, SessionSort.GATEWAY_ID, True) == [6, 5, 4, 3, 2, 1]
    assert await gateway_ids(repository, SessionSort.STATE, False) == [1, 5, 6, 4, 3, 2]
    assert await gateway_ids(repository, SessionSort.STATE, True) == [2, 3, 4, 1, 5, 6]
    # Sessions with no next run come last in either order.
    assert (await gateway_ids(repository, SessionSort.NEXT_RUN, False))[:3] == [6, 1, 5]
    assert (await gateway_ids(repository, SessionSort.NEXT_RUN, True))[:3] == [5, 1, 6]
    assert (await gateway_ids(repository, SessionSort.PROBLEM, False))[:2] == [4, 2]
    second = await repository.session_page(SessionSort.GATEWAY_ID, False, 4, 4)
    assert second.total == 6
    assert [line.record.gateway_session_id for line in second.lines] == [5, 6]
    run = await repository.start_run(6, Trigger.API, NOW, NODE)
    await repository.finish_run(run.id, RunStatus.PARTIAL, None, NOW + timedelta(seconds=5))
    (line,) = [ln for ln in second.lines if ln.record.gateway_session_id == 5]
    assert line.last_status is None
    again = await repository.session_page(SessionSort.GATEWAY_ID, False, 5, 1)
    (six,) = again.lines
    assert six.last_status is RunStatus.PARTIAL and six.last_started_at == NOW


async def test_the_channel_pool_and_its_use(repository: Repository) -> None:
    await pool_of(repository, 3)
    for name in ("alpha_news", "beta_news", "gamma_news"):
        await repository.add_channel(
            validate_channel(username=name, title=None, category=None, description=None)
        )
    limits = JoinLimits(per_day=5, per_channel_hour=20)
    for gateway_id, at in ((1, NOW - timedelta(minutes=5)), (2, NOW - timedelta(hours=3))):
        run = await repository.start_run(gateway_id, Trigger.API, at, NODE)
        verdicts = await repository.reserve_joins(run, ["alpha_news"], limits, at)
        assert verdicts == {"alpha_news": None}
        await repository.record_join(run, join_record(1, "alpha_news", Outcome.OK, at))
    await sql(
        repository, "UPDATE channels SET flagged_reason = 'private' WHERE username = 'gamma_news'"
    )
    lines = {line.view.username: line for line in await repository.channel_lines(NOW)}
    alpha = lines["alpha_news"]
    assert (alpha.members, alpha.joins_last_hour, alpha.joins_last_24h) == (2, 1, 2)
    assert (lines["beta_news"].members, lines["beta_news"].joins_last_24h) == (0, 0)
    assert lines["gamma_news"].view.flagged_reason == "private"
    assert lines["gamma_news"].view.shown().username == "@gamma_news"

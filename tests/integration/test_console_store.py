"""What the web console reads, on SQLite and PostgreSQL: the pool at a glance, the history
by the hour, the session list in every order with pages, and the channel pool's use."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import text

from heatup_daemon.db.activity import HOUR, KEPT, REVISED, hour_of
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import ActionKind, Outcome, RunStatus, SessionSort, Standing, Trigger
from heatup_daemon.records import ActionRecord, JoinLimits, Node
from heatup_daemon.validation import validate_channel
from heatup_daemon.views import RunFilter, SessionSearch
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
    assert overview.next_due_at == due


def zeros(names: type[StrEnum], **counts: int) -> dict[str, int]:
    """An hour's row for each of ``names``, as the roll-up writes them: zeros included."""
    return {str(name): counts.get(str(name), 0) for name in names}


async def test_the_history_rolls_up_by_the_hour(repository: Repository) -> None:
    await pool_of(repository, 3)
    failed = await repository.start_run(1, Trigger.API, NOW - timedelta(hours=1), NODE)
    action = ActionRecord(
        0, ActionKind.IDLE, None, 1.0, 1.0, failed.started_at, failed.started_at, Outcome.FAILED
    )
    await repository.record_action(failed.id, action)
    await repository.record_action(failed.id, replace(action, seq=1, outcome=Outcome.OK))
    await repository.finish_run(failed.id, RunStatus.FAILED, "x", NOW - timedelta(minutes=59))
    flying = await repository.start_run(2, Trigger.API, NOW, NODE)
    old = await repository.start_run(3, Trigger.CLI, NOW - timedelta(hours=30), NODE)
    await repository.finish_run(old.id, RunStatus.SUCCEEDED, None, NOW - timedelta(hours=30))
    ancient = await repository.start_run(3, Trigger.CLI, NOW - timedelta(days=9), NODE)
    await repository.finish_run(ancient.id, RunStatus.SUCCEEDED, None, NOW - timedelta(days=9))
    assert (await repository.activity(NOW - timedelta(days=7))).counted_at is None

    # The first pass counts the whole week and a day, an hour at a time.
    assert await repository.roll_up(NOW) == 8 * 24 + 1
    week = await repository.activity(NOW - timedelta(days=7))
    assert week.counted_at == NOW
    assert len(week.runs) == 7 * 24 + 1  # every hour counted, the empty ones too
    assert week.runs[hour_of(NOW - timedelta(hours=1))] == zeros(RunStatus, failed=1)
    assert week.runs[hour_of(NOW)] == zeros(RunStatus, running=1)
    assert week.runs[hour_of(NOW - timedelta(hours=30))] == zeros(RunStatus, succeeded=1)
    assert week.actions[hour_of(NOW - timedelta(hours=1))] == zeros(Outcome, failed=1, ok=1)
    assert sum(sum(hour.values()) for hour in week.runs.values()) == 3  # 9 days ago: out

    # The next counts its latest hours again: the run in flight has ended since.
    await repository.finish_run(flying.id, RunStatus.PARTIAL, None, NOW + timedelta(minutes=1))
    later = NOW + timedelta(minutes=2)
    counted = await repository.roll_up(later)
    assert counted == int((hour_of(later) - hour_of(NOW) + REVISED) / HOUR) + 1
    day = await repository.activity(NOW - timedelta(hours=23))
    assert day.runs[hour_of(NOW)] == zeros(RunStatus, partial=1)
    assert day.counted_at == later
    assert len(day.runs) == 24 + (hour_of(later) > hour_of(NOW))

    # A week and a day on, the hours past it are forgotten.
    await repository.roll_up(NOW + KEPT + HOUR)
    gone = await repository.activity(NOW - timedelta(days=30))
    assert min(gone.runs) == hour_of(NOW + HOUR)


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
    assert await gateway_ids(repository, SessionSort.STANDING, False) == [1, 5, 6, 4, 3, 2]
    # Descending, ties go by gateway id descending too: the exact reverse (an index's walk).
    assert await gateway_ids(repository, SessionSort.STANDING, True) == [2, 3, 4, 6, 5, 1]
    # Sessions with no next run come last in either order.
    assert (await gateway_ids(repository, SessionSort.NEXT_RUN, False))[:3] == [6, 1, 5]
    assert (await gateway_ids(repository, SessionSort.NEXT_RUN, True))[:3] == [5, 1, 6]
    assert (await gateway_ids(repository, SessionSort.PROBLEM, False))[:2] == [4, 2]
    second = await repository.session_page(SessionSort.GATEWAY_ID, False, 4, 4)
    assert (second.total, second.more_than_total, second.more) == (6, False, False)
    first = await repository.session_page(SessionSort.GATEWAY_ID, False, 0, 4)
    assert first.more and len(first.lines) == 4
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
    assert lines["alpha_news"].members == 0  # members are as last counted: not yet
    await repository.roll_up(NOW)
    lines = {line.view.username: line for line in await repository.channel_lines(NOW)}
    alpha = lines["alpha_news"]
    assert (alpha.members, alpha.joins_last_hour, alpha.joins_last_24h) == (2, 1, 2)
    assert (lines["beta_news"].members, lines["beta_news"].joins_last_24h) == (0, 0)
    assert lines["gamma_news"].view.flagged_reason == "private"
    assert lines["gamma_news"].view.shown().username == "@gamma_news"


async def test_the_session_list_is_searched_by_id_or_label_and_filtered_by_state(
    repository: Repository,
) -> None:
    labels = {1: "Berlin office", 2: "berlin 100%", 3: "tokyo", 12: None, 21: "o_o"}
    for gateway_id, label in labels.items():
        await repository.add_session(replace(session_spec(gateway_id), label=label))
    await sql(repository, "UPDATE sessions SET enabled = false WHERE gateway_session_id = 2")

    async def found(text: str = "", standing: Standing | None = None) -> list[int]:
        page = await repository.session_page(
            SessionSort.GATEWAY_ID, False, 0, 100, SessionSearch(text, standing)
        )
        assert page.total == len(page.lines)
        return [line.record.gateway_session_id for line in page.lines]

    assert await found() == [1, 2, 3, 12, 21]
    assert await found("BERLIN") == [1, 2]  # a label that starts with the text, any case
    assert await found("office") == []  # only its start
    assert await found("12") == [12]  # a gateway id, exactly
    assert await found("berlin 100%") == [2]  # % and _ are the text's own
    assert await found("o_o") == [21]
    assert await found("o_") == [21]
    assert await found("%") == []
    assert await found("berlin", Standing.DISABLED) == [2]
    assert await found(standing=Standing.ACTIVE) == [1, 3, 12, 21]
    assert await found("nowhere") == []


async def test_the_activity_page_filters_and_pages_every_run(repository: Repository) -> None:
    await pool_of(repository, 2)
    ids = []
    history = (
        (30, 1, RunStatus.FAILED),
        (5, 2, RunStatus.SUCCEEDED),
        (2, 1, RunStatus.SUCCEEDED),
        (1, 2, RunStatus.FAILED),
    )
    for hours, gateway_id, status in history:
        run = await repository.start_run(
            gateway_id, Trigger.API, NOW - timedelta(hours=hours), NODE
        )
        await repository.finish_run(
            run.id, status, None, NOW - timedelta(hours=hours) + timedelta(minutes=1)
        )
        ids.append(run.id)

    async def found(matching: RunFilter, before: int | None = None, limit: int = 10) -> list[int]:
        return [run.id for run in await repository.runs_page(matching, before, limit)]

    newest_first = list(reversed(ids))
    assert await found(RunFilter()) == newest_first
    assert await found(RunFilter(), limit=2) == newest_first[:2]
    assert await found(RunFilter(), before=newest_first[1]) == newest_first[2:]
    assert await found(RunFilter(status=RunStatus.FAILED)) == [ids[3], ids[0]]
    assert await found(RunFilter(gateway_session_id=1)) == [ids[2], ids[0]]
    assert await found(RunFilter(since=NOW - timedelta(hours=6))) == newest_first[:3]
    assert await found(RunFilter(until=NOW - timedelta(hours=6))) == [ids[0]]
    assert await found(RunFilter(node="n", trigger=Trigger.API)) == newest_first
    assert await found(RunFilter(node="other")) == []
    assert await found(RunFilter(trigger=Trigger.SCHEDULE)) == []

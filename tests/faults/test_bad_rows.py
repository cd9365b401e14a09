"""Hand edits of every kind: Hypothesis writes ``sessions`` and ``channels`` rows with plain
SQL, any value in any column, admin-owned and heatup-owned alike. The database refuses what
its constraints forbid; of the rest, every row heatup cannot use is flagged (and only
those), nothing raises, and the good rows keep their schedule and run."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.db import migrate
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.repository import Repository
from heatup_daemon.errors import InvalidValue
from heatup_daemon.session import validate_record
from heatup_daemon.testing import FakeClock
from tests.builders import session_spec
from tests.figures import Report
from tests.worlds import World

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GOOD = (1, 2)  # registered through the CLI's path; they must keep running


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


times = st.one_of(
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(3000, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(["", "soon", "now", "2026-02-31 00:00:00", "infinity", "-infinity"]),
    st.integers(-5, 2_500_000),
)
anything = st.one_of(
    st.none(), st.text(max_size=30), st.integers(-(2**40), 2**63 + 5), st.booleans(), times
)
# A row an admin might write by hand: usable to begin with ...
usable_sessions = st.fixed_dictionaries(
    {
        "gateway_session_id": st.integers(10, 10**9),
        "label": st.one_of(st.none(), st.text(max_size=20)),
        "enabled": st.booleans(),
        "schedule": st.sampled_from(["1h", "90s", "30m", "*/5 * * * *", "0 9 * * mon-fri"]),
        "jitter_seconds": st.integers(0, 60),
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Asia/Tokyo"]),
        "account_created_at": st.one_of(st.none(), st.just("2025-01-01 00:00:00")),
        "state": st.sampled_from(["active", "needs_attention"]),
        "state_reason": st.none(),
        "invalid_reason": st.none(),
        "applied_key": st.none(),
        "next_nominal_at": st.none(),
        "next_run_at": st.none(),
        "last_run_at": st.none(),
        "cooldown_until": st.none(),
        "flood_wait_s": st.none(),
    }
)
SPECIAL = {
    "gateway_session_id": st.one_of(st.integers(-3, 2**63 + 5), st.text(max_size=8)),
    "enabled": st.sampled_from(["yes", "2", "", "maybe", 2, -1]),
    "schedule": st.one_of(
        st.sampled_from(["5s", "0 0 31 2 *", "61 * * * *", "1h", ""]), st.text(max_size=20)
    ),
    "jitter_seconds": st.one_of(st.integers(-10, 200_000), st.text(max_size=5)),
    "timezone": st.sampled_from(["Mars/Olympus", "", "utc", "Etc/GMT+5"]),
    "state": st.sampled_from(["asleep", "", "ACTIVE"]),
    "invalid_reason": st.text(max_size=10),
    "applied_key": st.text(max_size=10),
}


@st.composite
def session_rows(draw: st.DrawFn) -> dict[str, Any]:
    """... then one or two of its columns set to anything (or to a value of their own kind
    that heatup cannot use)."""
    row = draw(usable_sessions)
    for column in draw(st.lists(st.sampled_from(sorted(row)), max_size=2, unique=True)):
        row[column] = draw(SPECIAL.get(column, anything) | anything)
    return row


channel_rows = st.fixed_dictionaries(
    {
        "username": st.one_of(
            st.sampled_from(["nasa_x", "NASA_Y", "@nasa_z", "x'y_z", "ab", "a" * 40]),
            st.text(min_size=4, max_size=32),
        ),
        "title": st.one_of(st.none(), st.text(max_size=20)),
        "category": st.one_of(st.none(), st.text(max_size=10)),
        "enabled": st.one_of(st.booleans(), st.sampled_from(["yes", "2"])),
    }
)


class Figures:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()


async def write_rows(engine: AsyncEngine, table: str, rows: list[dict[str, Any]]) -> int:
    """Insert each row as an admin's SQL client would; the number the database took."""
    taken = 0
    for row in rows:
        columns = ", ".join(row)
        values = ", ".join(literal(value) for value in row.values())
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    f"INSERT INTO {table} ({columns}) VALUES ({values})"
                )
            taken += 1
        except DBAPIError:
            pass  # refused by the database: the constraint did its job
    return taken


async def one_example(
    url: str, sessions: list[dict[str, Any]], channels: list[dict[str, Any]], figures: Figures
) -> None:
    engine = create_engine(DatabaseSettings(url=url))
    repository = Repository(engine)
    try:
        async with engine.begin() as connection:
            for table in (
                "warmup_actions",
                "channel_joins",
                "warmup_runs",
                "session_channels",
                "sessions",
                "channels",
            ):
                await connection.execute(text(f"DELETE FROM {table}"))
        await repository.seed_channels(Settings().channels)
        for gateway_id in GOOD:
            await repository.add_session(session_spec(gateway_id))
        figures.counts["session rows offered"] += len(sessions)
        figures.counts["session rows the database took"] += await write_rows(
            engine, "sessions", sessions
        )
        figures.counts["channel rows offered"] += len(channels)
        figures.counts["channel rows the database took"] += await write_rows(
            engine, "channels", channels
        )
        world = World(repository, clock=FakeClock(START))
        node = await world.node()
        await node.scheduler.prepare()
        for _ in range(3):
            await node.scheduler.reconcile()
            await world.tick()
            world.clock.advance(3600)
        await judge(repository, world.clock.now(), figures)
    finally:
        await repository.close()
        await engine.dispose()


async def judge(repository: Repository, now: datetime, figures: Figures) -> None:
    for record in await repository.list_sessions():
        try:
            session = validate_record(record, now)
        except InvalidValue:
            figures.counts["session rows flagged"] += 1
            assert record.invalid_reason, record  # unusable: flagged
            assert record.next_run_at is None or isinstance(record.next_run_at, str), record
            continue
        assert record.invalid_reason is None, record  # usable: not flagged
        if session.enabled and session.state == "active" and not session.cooldown_until:
            assert record.next_run_at is not None, record
    for gateway_id in GOOD:
        runs = await repository.history(gateway_id)
        assert len(runs) == 3 and all(r.status == "succeeded" for r in runs), runs
    for channel in await repository.list_channels():
        assert (channel.invalid_reason is None) == (channel.problem is None), channel
        if channel.invalid_reason:
            figures.counts["channel rows flagged"] += 1


@pytest.mark.timeout(900)
def test_any_hand_edit(database_url: str, long_variant: bool, report: Report) -> None:
    figures = Figures()

    async def migrate_once() -> None:
        engine = create_engine(DatabaseSettings(url=database_url))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate_once())

    @settings(
        max_examples=200 if long_variant else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(session_rows(), max_size=6), st.lists(channel_rows, max_size=4))
    def example(sessions: list[dict[str, Any]], channels: list[dict[str, Any]]) -> None:
        asyncio.run(one_example(database_url, sessions, channels, figures))
        figures.counts["examples"] += 1

    example()
    report(dict(figures.counts))

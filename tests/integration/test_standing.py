"""A row's standing is decided once (``session.standing``); the SQL that counts and filters
by it (``db.sessions.standing_sql``, and the indexed rank the console sorts by) is held to
it on every combination of the columns it reads, as hand edits can leave them (the
schema's constraints refuse a junk ``state`` or ``enabled``), on SQLite and PostgreSQL; and
``admit`` lets a row run exactly when its standing is ``active`` and it is not cooling
down."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy import literal_column, select, text

from heatup_daemon.db.models import STANDING_RANK_SQL, SessionRow
from heatup_daemon.db.repository import Repository
from heatup_daemon.db.sessions import record_columns, record_from, standing_sql
from heatup_daemon.enums import Standing
from heatup_daemon.errors import SessionNotRunnable
from heatup_daemon.session import admit, standing
from tests.builders import session_spec

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


async def test_sql_and_python_agree_on_every_row(repository: Repository) -> None:
    enabled = ["1", "0"] if repository.dialect == "sqlite" else ["true", "false"]
    combinations = list(
        itertools.product(
            (None, "'bad'", "''"), enabled, ("'active'", "'needs_attention'"), (None, 1)
        )
    )
    async with repository.engine.begin() as db:
        for gateway_id, (reason, on, state, cooling) in enumerate(combinations, start=1):
            cooldown = (
                "NULL" if cooling is None else f"'{(NOW + timedelta(hours=1)):%Y-%m-%d %H:%M:%S}'"
            )
            await db.execute(
                text(
                    "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, "
                    "timezone, enabled, state, invalid_reason, cooldown_until) VALUES "
                    f"({gateway_id}, '1h', 0, 'UTC', {on}, {state}, "
                    f"{reason or 'NULL'}, {cooldown})"
                )
            )
    query = select(
        *record_columns(),
        standing_sql().label("sql_standing"),
        literal_column(STANDING_RANK_SQL).label("rank"),
    ).order_by(SessionRow.id)
    async with repository.engine.connect() as db:
        rows = (await db.execute(query)).all()
    assert len(rows) == len(combinations)
    seen = set()
    for row in rows:
        record = record_from(row)
        verdict = standing(record)
        assert Standing(row.sql_standing) is verdict, (record, row.sql_standing)
        assert list(Standing)[row.rank] is verdict, (record, row.rank)  # the indexed form
        seen.add(verdict)
        try:
            admit(record, NOW)
        except SessionNotRunnable:
            ran = False
        else:
            ran = True
        cooling = record.cooldown_until is not None
        assert ran == (verdict is Standing.ACTIVE and not cooling), record
    assert seen == set(Standing)  # every standing came up


async def test_the_pool_is_the_channels_in_pool_on_every_row(repository: Repository) -> None:
    """``db.registry.in_pool_sql`` (what plans are made from) against ``ChannelView.in_pool``,
    on every combination of the columns it reads, an empty reason among them."""
    enabled = ["1", "0"] if repository.dialect == "sqlite" else ["true", "false"]
    reasons = (None, "'bad'", "''")
    combinations = list(itertools.product(enabled, reasons, reasons))
    async with repository.engine.begin() as db:
        for number, (on, invalid, flagged) in enumerate(combinations):
            await db.execute(
                text(
                    "INSERT INTO channels (username, enabled, invalid_reason, flagged_reason) "
                    f"VALUES ('channel_{number:02d}', {on}, {invalid or 'NULL'}, "
                    f"{flagged or 'NULL'})"
                )
            )
    session = admit(await repository.add_session(session_spec(1)), NOW)
    facts = await repository.planning_facts(session, NOW)
    views = await repository.list_channels()
    assert len(views) == len(combinations)
    in_pool = [view.username for view in views if view.in_pool]
    assert [channel.username for channel in facts.pool] == in_pool
    assert 0 < len(in_pool) < len(views)

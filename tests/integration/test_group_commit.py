"""Group commit on a real SQLite file: the writes queued while one runs commit together, each
caller answered after that commit; one that fails fails alone; a failed commit fails all."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from heatup_daemon.db.engine import _sqlite_events
from heatup_daemon.db.group_commit import GroupWriter
from heatup_daemon.enums import ActionKind, Clearance, Outcome, Trigger
from heatup_daemon.records import ActionRecord
from heatup_daemon.validation import validate_channel
from tests.builders import session_spec
from tests.conftest import migrated_repository


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    made = create_engine(f"sqlite:///{tmp_path / 'group.db'}")
    _sqlite_events(made, 5000)
    with made.begin() as connection:
        connection.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        connection.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
                "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield made
    made.dispose()


def rows(engine: Engine, table: str) -> list[int]:
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(text(f"SELECT id FROM {table} ORDER BY id"))]


async def held_group(writer: GroupWriter, works: list[Any]) -> list[Any]:
    """Run ``works`` as one group: the writer is held in a first write until all are queued."""
    entered, queued = threading.Event(), threading.Event()

    def hold(db: Connection) -> None:
        entered.set()
        queued.wait(10)

    first = writer.submit(hold)
    await asyncio.to_thread(entered.wait, 10)  # the writer is in the first write
    futures = [writer.submit(work) for work in works]
    queued.set()
    await first
    return await asyncio.gather(*futures, return_exceptions=True)


def insert(table: str, row_id: int, parent_id: int | None = None) -> Any:
    def work(db: Connection) -> int:
        if parent_id is None:
            db.execute(text(f"INSERT INTO {table} (id) VALUES ({row_id})"))
        else:
            db.execute(text(f"INSERT INTO {table} (id, parent_id) VALUES ({row_id}, {parent_id})"))
        return row_id

    return work


async def test_queued_writes_commit_together_and_a_failing_one_fails_alone(
    engine: Engine,
) -> None:
    writer = GroupWriter(engine)
    try:
        works = [insert("parent", n) for n in range(1, 21)]
        works[6] = insert("parent", 3)  # a duplicate key: refused
        answers = await held_group(writer, works)
    finally:
        writer.close()
    assert isinstance(answers[6], Exception) and "UNIQUE" in str(answers[6])
    assert [a for i, a in enumerate(answers) if i != 6] == [n for n in range(1, 21) if n != 7]
    assert rows(engine, "parent") == [n for n in range(1, 21) if n != 7]
    assert writer.groups == 2  # the held write alone, then the twenty together


async def test_a_failed_commit_fails_every_write_of_its_group(engine: Engine) -> None:
    writer = GroupWriter(engine)
    try:
        works = [insert("parent", 1), insert("child", 1, parent_id=99), insert("parent", 2)]
        answers = await held_group(writer, works)
        assert await writer.submit(insert("parent", 3)) == 3  # the next group goes on
    finally:
        writer.close()
    # The deferred foreign key fails at COMMIT: nothing of the group landed.
    assert all(isinstance(a, Exception) and "FOREIGN KEY" in str(a) for a in answers)
    assert rows(engine, "parent") == [3]
    assert rows(engine, "child") == []


async def test_the_fence_judges_the_lease_from_when_its_write_runs(tmp_path: Path) -> None:
    """A fence queued behind a long write is judged at the moment it runs: a lease that
    outlasted the call when it was asked, but not once the writer reached it, is short."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'fence.db'}"
    async with migrated_repository(url) as store:
        await store.add_channel(
            validate_channel(username="news", title=None, category=None, description=None)
        )
        await store.add_session(session_spec(1))
        now = datetime.now(UTC)
        node = (await store.register_node("node-a", 10.5, now)).node
        run = await store.start_run(1, Trigger.CLI, now, node)
        assert store._writer is not None
        first = store._writer.submit(lambda db: time.sleep(0.8))  # a long write ahead
        # Asked with 0.5 s to spare, answered after the long write.
        asked = asyncio.ensure_future(store.start_call(run.id, browse_in_flight(now), 10, now))
        await asyncio.sleep(0.1)  # it is queued
        await first
        assert await asked is Clearance.LEASE_SHORT
        assert await store.start_call(run.id, browse_in_flight(now), 9, now) is Clearance.CLEARED


def browse_in_flight(now: datetime) -> ActionRecord:
    return ActionRecord(
        1, ActionKind.BROWSE_DIALOGS, None, None, None, now, now, Outcome.UNKNOWN, "in_flight"
    )


async def test_commits_are_durable_on_every_connection(tmp_path: Path) -> None:
    """``synchronous=FULL`` on the repository's connections, the async engine's and the
    twin's that writes and reads: a commit heatup answered survives a power cut."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'durable.db'}"
    async with migrated_repository(url) as store:
        async with store.engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
        assert store._twin is not None
        with store._twin.connect() as twin:
            assert twin.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert store._writer is not None
        assert (
            await store._writer.submit(lambda db: db.exec_driver_sql("PRAGMA synchronous").scalar())
            == 2
        )

"""db/ledger.py reserve_joins on PostgreSQL: it checks that the run's session still exists,
then locks the channels and inserts the places. An admin's `sessions remove` that commits in
between made the INSERT violate channel_joins.session_id's foreign key (DatabaseRefused: a
defect, the run `failed`). The check now holds the session's row (FOR KEY SHARE) until the
places are written: the removal waits for them, and the next reservation is refused."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event

from heatup_daemon.config.settings import Settings
from heatup_daemon.enums import JoinRefusal, Trigger
from heatup_daemon.errors import DatabaseRefused
from heatup_daemon.records import JoinLimits
from tests.builders import session_spec
from tests.conftest import migrated_repository

REPO = Path(__file__).resolve().parents[2]  # the repository (tests/interleavings/..)

OTHER_ADMIN = """
import asyncio, sys
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.repository import Repository
async def main():
    engine = create_engine(DatabaseSettings(url=sys.argv[1]))
    repo = Repository(engine)
    await repo.remove_session(int(sys.argv[2]))
    await repo.close(); await engine.dispose()
asyncio.run(main())
"""


async def test_a_removal_between_the_check_and_the_insert_is_refused_not_a_defect(
    pg_url: str,
) -> None:
    async with migrated_repository(pg_url) as repo:
        channels = Settings().channels
        await repo.seed_channels(channels)
        await repo.add_session(session_spec(1, "1h"))
        now = datetime.now(UTC)
        node = (await repo.register_node("n1", 120, now)).node
        run = await repo.start_run(1, Trigger.API, now, node)
        channel = channels[0].username
        removals: list[subprocess.Popen[bytes]] = []

        @event.listens_for(repo.engine.sync_engine, "before_cursor_execute")
        def remove_meanwhile(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            if not removals and "FROM channels" in statement and "FOR UPDATE" in statement:
                # Another admin removes the session between the check and the insert.
                removals.append(
                    subprocess.Popen([sys.executable, "-c", OTHER_ADMIN, pg_url, "1"], cwd=REPO)
                )
                time.sleep(1)  # its DELETE reaches the server and waits for the row's lock

        try:
            verdicts = await repo.reserve_joins(run, [channel], JoinLimits(5, 5), now)
        except DatabaseRefused as exc:
            pytest.fail(f"a removal meanwhile is a defect: {exc}")
        finally:
            event.remove(repo.engine.sync_engine, "before_cursor_execute", remove_meanwhile)
        assert removals and removals[0].wait(30) == 0  # the removal went through after it
        assert verdicts == {channel: None}  # decided while the session was there
        again = await repo.reserve_joins(run, ["another"], JoinLimits(5, 5), now)
        assert again == {"another": JoinRefusal.SESSION_REMOVED}

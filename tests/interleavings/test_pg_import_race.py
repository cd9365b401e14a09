"""Once a defect: db/registry.py import_sessions on PostgreSQL: it reads which gateway ids are
registered, then inserts the rest, in one READ COMMITTED transaction with no lock. A session
another admin registers between the two (committed meanwhile) makes the chunk's INSERT violate
the unique gateway id: DatabaseRefused, the import stops half-written (earlier chunks kept)
instead of "a session registered by someone else meanwhile is reported, the rest written"
(README, Imports)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heatup_daemon import transfer
from heatup_daemon.db import registry as db_registry
from heatup_daemon.enums import Actor, Format, Surface
from heatup_daemon.views import Author
from tests.conftest import migrated_repository

REPO = Path(__file__).resolve().parents[2]

OTHER_ADMIN = """
import asyncio, sys
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.repository import Repository
from tests.builders import session_spec
async def main():
    engine = create_engine(DatabaseSettings(url=sys.argv[1]))
    repo = Repository(engine)
    await repo.add_session(session_spec(int(sys.argv[2]), "1h"))
    await repo.close(); await engine.dispose()
asyncio.run(main())
"""


async def test_a_session_registered_meanwhile_is_reported_and_the_rest_written(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    url = pg_url
    async with migrated_repository(url) as repo:
        original, calls = db_registry._registered, {"n": 0}
        chunk = transfer.CHUNK
        taken_id = chunk + 7  # in the second chunk

        def racing(db, gateway_ids):  # type: ignore[no-untyped-def]
            found = original(db, gateway_ids)
            calls["n"] += 1
            # calls 1-2: the pre-checks of the 2 chunks; 3: chunk 1's write; 4: chunk 2's
            if calls["n"] == 4:  # another admin registers one of chunk 2's ids, now
                subprocess.run(
                    [sys.executable, "-c", OTHER_ADMIN, url, str(taken_id)],
                    check=True,
                    cwd=REPO,
                )
            return found

        monkeypatch.setattr(db_registry, "_registered", racing)
        text = "gateway_id,schedule\n" + "".join(f"{i},1h\n" for i in range(1, 2 * chunk + 1))
        report = await transfer.register_all(
            repo,
            text,
            Format.CSV,
            skip_invalid=False,
            by=Author(Surface.CLI, Actor.NO_TOKEN),
            now=datetime.now(UTC),
        )
        # The other admin's session is reported, every other row is written and audited.
        assert [str(problem) for problem in report.problems] == [
            f"line {taken_id + 1}: a session with gateway id {taken_id} is already registered"
        ]
        assert report.written == 2 * chunk - 1
        assert len(await repo.registered(list(range(1, 2 * chunk + 1)))) == 2 * chunk

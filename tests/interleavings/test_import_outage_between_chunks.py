"""Once a defect: an all-or-nothing import (written CHUNK rows a transaction) that lost the
database at its second chunk failed with no word of the first chunk's rows, which stayed
registered, and the same import run again wrote nothing. The error now says how many were
registered, up to which line, and how to register the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from heatup_daemon import transfer
from heatup_daemon.enums import Actor, Format, Surface
from heatup_daemon.errors import DatabaseUnavailable, ImportCut
from heatup_daemon.views import Author
from tests.conftest import migrated_repository

BY = Author(Surface.CLI, Actor.NO_TOKEN)


async def test_an_outage_between_chunks_says_what_was_written_and_how_to_go_on(
    tmp_path: Path,
) -> None:
    async with migrated_repository(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}") as repo:
        chunk = transfer.CHUNK
        text = "gateway_id,schedule\n" + "".join(f"{i},1h\n" for i in range(1, 2 * chunk + 1))
        import_sessions, calls = repo.import_sessions, {"n": 0}

        async def second_chunk_fails(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise DatabaseUnavailable("the database went away between two chunks")
            return await import_sessions(*args, **kwargs)

        repo.import_sessions = second_chunk_fails  # type: ignore[method-assign]
        with pytest.raises(ImportCut) as cut:
            await transfer.register_all(
                repo, text, Format.CSV, skip_invalid=False, by=BY, now=datetime.now(UTC)
            )
        repo.import_sessions = import_sessions  # type: ignore[method-assign]
        written = await repo.registered(list(range(1, 2 * chunk + 1)))
        # The error says what was written (the first chunk, a transaction of its own)...
        assert written == set(range(1, chunk + 1))
        assert f"at least {chunk} of {2 * chunk} sessions were registered" in str(cut.value)
        assert f"up to line {chunk + 1}" in str(cut.value) and "--skip-invalid" in str(cut.value)
        # ... and the way it names registers the rest, reporting the others.
        again = await transfer.register_all(
            repo, text, Format.CSV, skip_invalid=True, by=BY, now=datetime.now(UTC)
        )
        assert again.written == chunk and len(again.problems) == chunk
        assert await repo.registered(list(range(1, 2 * chunk + 1))) == set(range(1, 2 * chunk + 1))

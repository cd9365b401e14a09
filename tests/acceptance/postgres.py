"""PostgreSQL databases that several daemons of a test share (the cluster, the clock skew,
the outage): a fresh one of the test's own, and sessions registered in it in plain SQL, as
an admin would (``daemons.sqlite_with_sessions`` is the same on SQLite)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.acceptance.conftest import HEATUP
from tests.databases import create_postgres_database, drop_postgres_database, postgres_server_url
from tests.judging import query


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of an empty database on the test server, dropped afterwards; without a
    server, the test is skipped."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("the PostgreSQL variant: no PostgreSQL server (tests/run says so)")
    url = create_postgres_database(server)
    try:
        yield url
    finally:
        drop_postgres_database(server, url)


def insert_sessions(url: str, sessions: int, schedule: str, jitter_s: int) -> None:
    """Sessions 1 to ``sessions`` on ``schedule``, enabled, in UTC."""
    query(
        url,
        "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, enabled, "
        f"state) SELECT g, '{schedule}', {jitter_s}, 'UTC', true, 'active' "
        f"FROM generate_series(1, {sessions}) g",
    )


def postgres_with_sessions(url: str, sessions: int, schedule: str, jitter_s: int) -> None:
    """The database migrated by ``heatup db upgrade``, then ``insert_sessions``."""
    subprocess.run(
        [str(HEATUP), "db", "upgrade"],
        env={**os.environ, "HEATUP_DATABASE__URL": url},
        check=True,
        capture_output=True,
    )
    insert_sessions(url, sessions, schedule, jitter_s)

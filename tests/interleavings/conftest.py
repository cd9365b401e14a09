"""What the interleavings' PostgreSQL cases share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.databases import create_postgres_database, drop_postgres_database, postgres_server_url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database of its own, dropped after the test."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("a PostgreSQL server: tests/run finds or starts one")
    url = create_postgres_database(server)
    yield url
    drop_postgres_database(server, url)

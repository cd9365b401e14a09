"""Throwaway databases for tests: a SQLite file, and a fresh PostgreSQL database per test
when ``HEATUP_TEST_DATABASE_URL`` names a server (CI sets it)."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
from sqlalchemy.engine import make_url

TEST_DATABASE_ENV = "HEATUP_TEST_DATABASE_URL"


def postgres_server_url() -> str | None:
    return os.environ.get(TEST_DATABASE_ENV) or None


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_postgres_database(server_url: str) -> str:
    """Create an empty database on the server of ``server_url``; return its URL."""
    name = f"heatup_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return (
        make_url(server_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


def drop_postgres_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

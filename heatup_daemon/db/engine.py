"""Engines for SQLite and PostgreSQL (asyncpg or psycopg 3).

SQLite: every connection gets WAL, a busy timeout and foreign keys (off by default, and ON
DELETE rules need them). heatup emits the transaction's BEGIN itself: ``BEGIN IMMEDIATE``
for a write transaction (the ``WRITE`` execution option), so that it takes the write lock
up front, and a plain deferred ``BEGIN`` for the rest. The async engine (aiosqlite) serves
migrations and one-off commands; the repository's own transactions run on a synchronous
twin (``sqlite_twin``) in threads of their own, one thread hop a transaction instead of one
per statement.

PostgreSQL: sessions run in UTC (so that a time cast to text reads the same on every
node), with a connect timeout and a statement timeout, so that a database that hangs is
noticed as unavailable instead of stalling a claim.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from heatup_daemon.config.sections import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_S, DatabaseSettings

WRITE: Final = "heatup_write"


def create_engine(settings: DatabaseSettings, **kwargs: Any) -> AsyncEngine:
    """An engine for ``settings.url``."""
    if settings.is_sqlite:
        engine = create_async_engine(settings.url, **kwargs)
        _sqlite_events(engine.sync_engine, settings.sqlite_busy_timeout_ms)
        return engine
    if settings.url.startswith("postgresql+asyncpg"):
        connect_args: dict[str, Any] = {
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": STATEMENT_TIMEOUT_S,
            "server_settings": {"timezone": "UTC"},
        }
    else:  # psycopg 3
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c timezone=UTC -c statement_timeout={STATEMENT_TIMEOUT_S * 1000}",
        }
    # No pre-ping: it costs a round trip per checkout. A connection a restart broke fails
    # once, as DatabaseUnavailable, and SQLAlchemy then replaces every pooled connection.
    return create_async_engine(
        settings.url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=CONNECT_TIMEOUT_S,
        connect_args=connect_args,
        **kwargs,
    )


def sqlite_twin(engine: AsyncEngine, busy_timeout_ms: int) -> Engine:
    """A synchronous engine (the standard library's sqlite3) on ``engine``'s database, set
    up as ``engine`` is. Its connections may be used from any thread."""
    twin = create_sync_engine(engine.url.set(drivername="sqlite+pysqlite"))
    _sqlite_events(twin, busy_timeout_ms)
    return twin


def _sqlite_events(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # heatup emits BEGIN (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # A commit heatup answered survives a power cut (NORMAL would let WAL's last
        # commits roll back: a claim run again, a call forgotten). With grouped writes
        # this is one fsync a group, not one a write.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        # Straight to sqlite3: the statement needs none of SQLAlchemy's execution machinery,
        # and every transaction pays for it.
        connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if immediate else "BEGIN"
        )

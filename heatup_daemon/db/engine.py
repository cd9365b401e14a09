"""Engines for SQLite and PostgreSQL (asyncpg or psycopg 3).

SQLite: the async engine (aiosqlite) serves migrations and one-off commands, its
connections set up as ``sqlite`` says; the repository's own transactions run on
``sqlite.SqliteThreads``.

PostgreSQL: sessions run in UTC (so that a time cast to text reads the same on every
node), with a connect timeout and a statement timeout, so that a database that hangs is
noticed as unavailable instead of stalling a claim.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from heatup_daemon.config.sections import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_S, DatabaseSettings
from heatup_daemon.db import dialect, sqlite

# PostgreSQL's session settings and timeouts, as each driver takes them.
_CONNECT_ARGS: Final[dict[str, dict[str, Any]]] = {
    "asyncpg": {
        "timeout": CONNECT_TIMEOUT_S,
        "command_timeout": STATEMENT_TIMEOUT_S,
        "server_settings": {"timezone": "UTC"},
    },
    "psycopg": {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": f"-c timezone=UTC -c statement_timeout={STATEMENT_TIMEOUT_S * 1000}",
    },
}


def create_engine(settings: DatabaseSettings, **kwargs: Any) -> AsyncEngine:
    """An engine for ``settings.url``."""
    url = make_url(settings.url)
    if dialect.is_sqlite(dialect.name_of(url)):
        engine = create_async_engine(url, **kwargs)
        sqlite.set_up(engine.sync_engine, settings.sqlite_busy_timeout_ms)
        return engine
    # No pre-ping: it costs a round trip per checkout. A connection a restart broke fails
    # once, as DatabaseUnavailable, and SQLAlchemy then replaces every pooled connection.
    return create_async_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=CONNECT_TIMEOUT_S,
        connect_args=_CONNECT_ARGS[url.get_driver_name()],
        **kwargs,
    )

"""Async engines for SQLite (aiosqlite) and PostgreSQL (asyncpg or psycopg 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from heatup_daemon.config import DatabaseSettings


def create_engine(settings: DatabaseSettings, **kwargs: Any) -> AsyncEngine:
    """An engine for ``settings.url``; on SQLite every connection gets WAL, a busy timeout
    and foreign keys (SQLite leaves them off by default, and ON DELETE rules need them)."""
    if settings.is_sqlite:
        engine = create_async_engine(settings.url, **kwargs)
        busy_timeout_ms = settings.sqlite_busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL's recommended durability: no fsync per commit; a power cut may lose the last
            # commits, never the database.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(
        settings.url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=True,
        **kwargs,
    )

"""The base of heatup's repository: one engine, one session factory, short transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from heatup_daemon.config import masked_database_url
from heatup_daemon.db.migrate import ensure_at_head
from heatup_daemon.errors import DatabaseUnavailable

V = TypeVar("V")


def view_of(view_class: type[V], row: Any, **overrides: Any) -> V:
    """A frozen view built from the same-named attributes of an ORM row."""
    names = (f.name for f in fields(view_class))  # type: ignore[arg-type]
    values = {name: getattr(row, name) for name in names if name not in overrides}
    return view_class(**values, **overrides)


def rows_affected(result: Any) -> int:
    """How many rows an UPDATE or DELETE touched (a driver may not say: then 0)."""
    return int(getattr(result, "rowcount", 0) or 0)


class Store:
    """Database operations over one engine. Construct once per process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def ensure_ready(self) -> None:
        """Raise ``DatabaseUnavailable`` or ``SchemaNotAtHead`` unless the database is usable."""
        try:
            await ensure_at_head(self.engine)
        except (DBAPIError, OSError) as exc:
            url = masked_database_url(self.engine.url.render_as_string(hide_password=False))
            reason = getattr(exc, "orig", None) or exc
            raise DatabaseUnavailable(
                f"database {url} is not reachable: {type(reason).__name__}: {reason}"
            ) from None

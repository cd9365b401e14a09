"""The base of heatup's repository: one engine, short transactions, errors translated.

Every operation is a plain function of a synchronous ``Connection`` that runs as one
transaction, a read (``_read``) or a write (``_write``): on PostgreSQL, on a connection of
the async engine through ``run_sync``, where claims lock rows explicitly; on
SQLite, in threads of its own (``sqlite.SqliteThreads``: one writer, whose queued writes
commit together, and a few readers). What else differs between the two is decided in
``dialect``.

Failures of the database itself (unreachable, restarting, locked past the busy timeout, out
of connections, a statement timeout: ``is_transient`` names them) become
``DatabaseUnavailable``, which callers wait out. A statement the database refuses (a
constraint, a missing column, a disk error) becomes ``DatabaseRefused``, never retried.

Every public operation is atomic against cancellation: a caller that is cancelled (a run an
admin disabled, a stop) stops waiting at once, but the operation's transaction completes or
rolls back in the background, never cut in half. ``drain`` waits for those operations
before the engine is closed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import Select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from heatup_daemon.config.sections import DEFAULT_BUSY_TIMEOUT_MS, masked_database_url
from heatup_daemon.db import dialect
from heatup_daemon.db.dialect import Ts
from heatup_daemon.db.migrate import ensure_at_head
from heatup_daemon.db.sqlite import SqliteThreads
from heatup_daemon.errors import DatabaseRefused, DatabaseUnavailable
from heatup_daemon.records import PoolJoins
from heatup_daemon.stores import carried

R = TypeVar("R")
# One transaction's work: a function of a connection, run inside the transaction.
Work = Callable[[Connection], R]
# Rows per multi-row INSERT: well under both databases' limit of bound parameters.
INSERT_CHUNK: Final = 500


def record_of(record_class: type[R], row: Any, **overrides: Any) -> R:
    """A frozen record built from the same-named fields of a result row or ORM object."""
    mapping = row._mapping if hasattr(row, "_mapping") else None
    values = {}
    for item in fields(record_class):  # type: ignore[arg-type]
        if item.name not in overrides:
            values[item.name] = (
                mapping[item.name] if mapping is not None else getattr(row, item.name)
            )
    return record_class(**values, **overrides)


def rows_affected(result: Any) -> int:
    """How many rows an UPDATE or DELETE touched (a driver may not say: then 0)."""
    return int(getattr(result, "rowcount", 0) or 0)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is the database being unavailable for now, which heatup waits out,
    rather than a statement failing, which is a defect. Transient means one of:

    - no connection: it could not be made or was lost (an error of the operating system, a
      timeout, SQLAlchemy invalidating the connection, SQLSTATE class 08);
    - the server is starting, stopping or out of connections (57P01-57P03, 53300), or
      SQLAlchemy's pool has none to give in time;
    - a lock not had in time: SQLite busy or locked past the busy timeout; PostgreSQL's
      lock_not_available (55P03), a deadlock or a serialization failure (40P01, 40001), or
      heatup's statement timeout (57014).

    Anything else (a constraint, a missing column, too many bound variables, a disk I/O
    error, a bug) is not."""
    if isinstance(error, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    cause: BaseException | None = error
    while cause is not None:  # the driver's own error, wherever SQLAlchemy wrapped it
        if _unavailable_cause(cause):
            return True
        cause = getattr(cause, "orig", None) or cause.__cause__
    return False


# SQLSTATEs of an unavailable server, besides class 08 (connection exceptions).
_TRANSIENT_SQLSTATES: Final = frozenset(
    {"57P01", "57P02", "57P03", "53300", "55P03", "40P01", "40001", "57014"}
)


def _unavailable_cause(cause: BaseException) -> bool:
    if isinstance(cause, OSError | TimeoutError):
        return True
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if isinstance(code, str) and (code.startswith("08") or code in _TRANSIENT_SQLSTATES):
        return True
    sqlite = getattr(cause, "sqlite_errorname", None)
    if isinstance(sqlite, str):
        return sqlite.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    driver = type(cause).__module__.split(".")[0]
    if driver == "asyncpg" and type(cause).__name__ == "InterfaceError":
        return "closed" in str(cause)  # the connection was closed under the statement
    # psycopg says a connection failed or was lost with an OperationalError and no SQLSTATE.
    return driver == "psycopg" and type(cause).__name__ == "OperationalError" and code is None


def _uncancellable(
    operation: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(operation)
    async def run(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
        return await carried(operation(self, *args, **kwargs), self._pending)

    return run


class SqlStore:
    """Database operations over one engine. Construct once per process."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _uncancellable(member))

    def __init__(
        self, engine: AsyncEngine, sqlite_busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    ) -> None:
        self.engine = engine
        self._pending: set[asyncio.Future[Any]] = set()
        self.dialect: str = engine.dialect.name
        # The pool's joins of the last hour, shared by the plans of a few seconds
        # (``records.POOL_JOINS_S``).
        self._pool_joins: PoolJoins | None = None
        self._sqlite = (
            SqliteThreads(engine, sqlite_busy_timeout_ms)
            if dialect.is_sqlite(self.dialect)
            else None
        )

    def locked(
        self, query: Select[*Ts], of: Any, *, skip_taken: bool = False, key_share: bool = False
    ) -> Select[*Ts]:
        """``query`` locking the rows of ``of`` it reads (``dialect.locked``)."""
        return dialect.locked(self.dialect, query, of, skip_taken=skip_taken, key_share=key_share)

    def shared_now(self, now: datetime, plus_s: float = 0.0) -> ColumnElement[datetime]:
        """The moment a decision that nodes share (a lease, a reap, a fence) is made at, plus
        ``plus_s`` (``dialect.shared_now``: never a node's clock on PostgreSQL)."""
        return dialect.shared_now(self.dialect, now, plus_s)

    def bound_shared_now(self, name: str) -> ColumnElement[datetime]:
        """``shared_now`` for a statement built once and run many times, its seconds bound
        as ``name`` (``dialect.bound_shared_now``; ``shared_values`` gives the values)."""
        return dialect.bound_shared_now(self.dialect, name)

    def shared_values(self, now: datetime, **plus_s: float) -> dict[str, Any]:
        """The values of ``bound_shared_now`` parameters (``dialect.shared_values``)."""
        return dialect.shared_values(self.dialect, now, **plus_s)

    async def _read(self, work: Work[R]) -> R:
        """``work`` in a read transaction; its result."""
        return await self._transaction(work, write=False)

    async def _write(self, work: Work[R]) -> R:
        """``work`` in a write transaction, committed when it returns; its result."""
        return await self._transaction(work, write=True)

    async def _transaction(self, work: Work[R], *, write: bool) -> R:
        async with self._translated():
            if self._sqlite is not None:
                return await (self._sqlite.write(work) if write else self._sqlite.read(work))
            async with self.engine.connect() as connection:
                return await connection.run_sync(_in_transaction, work)

    async def close(self) -> None:
        """Wait for operations in flight, then release the SQLite threads and connections
        (the async engine is its owner's to dispose)."""
        await self.drain()
        if self._sqlite is not None:
            self._sqlite.close()

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except Exception as error:
            if is_transient(error):
                raise DatabaseUnavailable(self._unavailable(error)) from None
            if isinstance(error, sa_exc.DBAPIError):
                reason = f"the database refused a statement: {_reason(error)}"
                raise DatabaseRefused(reason) from error
            raise

    def _unavailable(self, error: BaseException) -> str:
        url = masked_database_url(self.engine.url.render_as_string(hide_password=False))
        return f"database {url} is not available: {_reason(error)}"

    def insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ``ON CONFLICT`` on this database."""
        return dialect.insert(self.dialect, table)

    @staticmethod
    def _insert_rows(
        db: Connection, statement: Insert, rows: Iterable[Mapping[str, Any]]
    ) -> list[Any]:
        """Run a multi-row ``statement`` (with RETURNING) over ``rows`` in chunks; the
        returned rows of every chunk."""
        batch = list(rows)
        returned: list[Any] = []
        for start in range(0, len(batch), INSERT_CHUNK):
            result = db.execute(statement.values(batch[start : start + INSERT_CHUNK]))
            returned.extend(result.all())
        return returned

    async def schema_revision(self) -> str | None:
        """The schema revision the database is at (a cheap read, for readiness probes)."""
        revision = await self._read(
            lambda db: db.scalar(text("SELECT version_num FROM alembic_version"))
        )
        return None if revision is None else str(revision)

    async def drain(self) -> None:
        """Until every operation a cancelled caller left running has ended."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def ensure_ready(self) -> None:
        """Raise ``DatabaseUnavailable`` or ``SchemaNotAtHead`` unless the database is usable."""
        async with self._translated():
            await ensure_at_head(self.engine)


def _reason(error: BaseException) -> str:
    """The driver's error, on one line: its class and the start of its text."""
    reason = getattr(error, "orig", None) or error
    text = " ".join(str(reason).split())[:200]
    return f"{type(reason).__name__}: {text}"


def _in_transaction(connection: Connection, work: Work[R]) -> R:
    with connection.begin():
        return work(connection)

"""SQLite as heatup runs it: its connections, and its transactions in threads of their own.

Every connection gets WAL, ``synchronous=FULL`` (a commit heatup answered survives a power
cut), a busy timeout and foreign keys (off by default, and ON DELETE rules need them).
heatup emits the transaction's BEGIN itself: ``BEGIN IMMEDIATE`` for a write transaction,
so that it takes the database's one write lock up front (waiting up to the busy timeout for
another process, such as an admin's SQL client) and never fails on a stale snapshot, and a
plain deferred ``BEGIN`` for the rest.

The repository's transactions run on a synchronous twin of the async engine (the standard
library's sqlite3), in threads (``SqliteThreads``): one thread hop a transaction, where
aiosqlite would make one per statement. Reads run in a few threads. Writes run in one
(``GroupWriter``), so the process's writers take turns there and never wait for each other
in SQLite's busy handler, which sleeps in steps; and the transactions queued while one runs
are taken together: each runs in a savepoint of its own inside one transaction, and the
group commits once. A caller gets its answer only after the commit that made its writes
durable, as with a transaction of its own; one that fails rolls back to its savepoint and
fails alone, the others still commit. If the commit itself fails, no write of the group
landed, and every caller gets that error. What a group saves is the work around the writes
(a connection checkout, ``BEGIN IMMEDIATE``, the commit and the connection's reset, one
wake-up of the event loop per answer), which is most of what a small write costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

R = TypeVar("R")
# The execution option that makes a transaction a write one: it begins IMMEDIATE.
WRITE_TRANSACTION: Final = "heatup_write_transaction"
# Threads that run read transactions (writes have one thread of their own).
READERS: Final = 2

# Transactions in one group at most: a group holds SQLite's write lock while it runs, and
# another process (an admin's SQL client) waits for it meanwhile.
MAX_GROUP: Final = 64
# The savepoint each write of a group runs in (one at a time, so one name serves).
_SAVEPOINT: Final = "heatup_grouped_write"


class WriterClosed(RuntimeError):
    """A write submitted after the writer was closed: a defect of its caller, which would
    otherwise wait for an answer that never comes."""


@dataclass(frozen=True, slots=True)
class _Write:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


# (result, error) of one write.
_Outcome = tuple[Any, BaseException | None]


class GroupWriter:
    """The writer thread: ``submit`` a transaction's work, await its answer."""

    def __init__(self, engine: Engine, max_group: int = MAX_GROUP) -> None:
        self._engine = engine
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._closing = threading.Lock()  # nothing is queued after the end of the queue
        self._closed = False
        self.groups = 0  # transactions committed (or tried), each of one or more writes
        self._thread = threading.Thread(target=self._serve, name="heatup-sqlite-write", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``work`` (a function of the transaction's connection); its result, or its
        error, once the group it ran in has committed. ``WriterClosed`` once ``close`` was
        called."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._closing:
            if self._closed:
                raise WriterClosed("the SQLite writer is closed: the store was closed")
            self._queue.put(_Write(work, future, loop))
        return future

    def close(self) -> None:
        """Finish what is queued, then end the thread; later writes are refused."""
        with self._closing:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, closing = [first], False
            while len(group) < self._max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                group.append(more)
            self.groups += 1
            _answer(group, self._run(group))
            if closing:
                return

    def _run(self, group: Sequence[_Write]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            with self._engine.connect() as connection:
                connection = connection.execution_options(**{WRITE_TRANSACTION: True})
                with connection.begin():
                    if len(group) == 1:  # alone: its own transaction, no savepoint
                        outcomes.append((group[0].work(connection), None))
                    else:
                        outcomes.extend(_in_savepoint(connection, w.work) for w in group)
        except BaseException as error:  # the transaction (or its commit) failed: nothing
            # landed. Whatever it was goes to the callers, as an executor's thread would.
            return [(None, error)] * len(group)
        return outcomes


def _in_savepoint(connection: Connection, work: Callable[[Connection], Any]) -> _Outcome:
    # Straight to sqlite3, as the transaction's BEGIN is (``set_up``): a savepoint needs none
    # of SQLAlchemy's execution machinery.
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        result = work(connection)
    except BaseException as error:
        raw.execute(f"ROLLBACK TO {_SAVEPOINT}")
        raw.execute(f"RELEASE {_SAVEPOINT}")
        return None, error
    raw.execute(f"RELEASE {_SAVEPOINT}")
    return result, None


def _answer(group: Sequence[_Write], outcomes: Sequence[_Outcome]) -> None:
    """Hand every answer of the group to its event loop, in one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Write, _Outcome]]] = {}
    for write, outcome in zip(group, outcomes, strict=True):
        by_loop.setdefault(write.loop, []).append((write, outcome))
    for loop, answers in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, answers)


def _settle(answers: Sequence[tuple[_Write, _Outcome]]) -> None:
    for write, (result, error) in answers:
        if write.future.done():  # its caller was cancelled
            continue
        if error is not None:
            write.future.set_exception(error)
        else:
            write.future.set_result(result)


def set_up(engine: Engine, busy_timeout_ms: int) -> None:
    """Set up every connection of ``engine`` as the module says."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # heatup emits BEGIN (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL would let WAL's last commits roll back at a power cut: a claim run again, a
        # call forgotten. With grouped writes this is one fsync a group, not one a write.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_TRANSACTION, False)
        # Straight to sqlite3: the statement needs none of SQLAlchemy's execution machinery,
        # and every transaction pays for it.
        connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if immediate else "BEGIN"
        )


class SqliteThreads:
    """A synchronous twin of ``engine`` (its connections usable from any thread), the writer
    thread and the readers' threads."""

    def __init__(self, engine: AsyncEngine, busy_timeout_ms: int) -> None:
        self.twin = create_engine(engine.url.set(drivername="sqlite+pysqlite"))
        set_up(self.twin, busy_timeout_ms)
        self.writer = GroupWriter(self.twin)
        self._readers = ThreadPoolExecutor(READERS, "heatup-sqlite-read")

    async def write(self, work: Callable[[Connection], R]) -> R:
        """``work`` in a write transaction, committed (with its group) when it returns."""
        result: R = await self.writer.submit(work)
        return result

    async def read(self, work: Callable[[Connection], R]) -> R:
        """``work`` in a read transaction, in a reader's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, work)

    def _read(self, work: Callable[[Connection], R]) -> R:
        with self.twin.connect() as connection, connection.begin():
            return work(connection)

    def close(self) -> None:
        """End the threads once their work is done, and close the twin's connections."""
        self.writer.close()
        self._readers.shutdown(wait=True)
        self.twin.dispose()

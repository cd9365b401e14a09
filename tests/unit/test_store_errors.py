"""Which database failures are the database being unavailable (waited out) and which are a
statement failing (a bug or bad data: raised as they are)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc


class DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(error: BaseException, kind: type[exc.DBAPIError] = exc.DBAPIError) -> exc.DBAPIError:
    return kind("SELECT 1", {}, error)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        exc.TimeoutError("QueuePool limit reached"),
        wrapped(DriverError("the database system is shutting down", "57P03")),
        wrapped(DriverError("terminating connection due to administrator command", "57P01")),
        wrapped(DriverError("sorry, too many clients already", "53300")),
        wrapped(DriverError("canceling statement due to statement timeout", "57014")),
        wrapped(DriverError("connection failure", "08006")),
        wrapped(DriverError("could not obtain lock", "55P03")),
        wrapped(DriverError("deadlock detected", "40P01")),
        wrapped(OSError("connection reset")),
    ],
)
def test_unavailable(error: BaseException) -> None:
    from heatup_daemon.db.base import is_transient

    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(DriverError("duplicate key", "23505"), exc.IntegrityError),
        wrapped(DriverError("syntax error", "42601"), exc.ProgrammingError),
        wrapped(DriverError("value too long", "22001"), exc.DataError),
        wrapped(DriverError("raised by a trigger", "P0001"), exc.InternalError),
        # An OperationalError is not unavailability by its class alone.
        wrapped(DriverError("out of shared memory", "53200"), exc.OperationalError),
        ValueError("a bug"),
    ],
)
def test_a_failing_statement_is_not_unavailability(error: BaseException) -> None:
    from heatup_daemon.db.base import is_transient

    assert not is_transient(error)


def sqlite_error(tmp_path: Path, statement: str, *, hold_lock: bool = False) -> exc.DBAPIError:
    """What SQLAlchemy raises for ``statement`` on a real SQLite database."""
    database = tmp_path / "errors.db"
    with contextlib.closing(sqlite3.connect(database)) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER)")
        setup.commit()
    holder = sqlite3.connect(database, isolation_level=None)
    if hold_lock:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    engine = create_engine(f"sqlite:///{database}", connect_args={"timeout": 0})
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
    except exc.DBAPIError as error:
        return error
    finally:
        holder.close()
        engine.dispose()
    raise AssertionError(f"{statement!r} did not fail")


def test_sqlite_busy_is_unavailability_other_operational_errors_are_defects(
    tmp_path: Path,
) -> None:
    from heatup_daemon.db.base import is_transient

    busy = sqlite_error(tmp_path, "INSERT INTO t VALUES (1)", hold_lock=True)
    assert isinstance(busy, exc.OperationalError) and is_transient(busy)
    missing = sqlite_error(tmp_path, "SELECT nothing FROM t")
    assert isinstance(missing, exc.OperationalError) and not is_transient(missing)
    many = ", ".join("?" for _ in range(40_000))  # past SQLite's 32,766 bound variables
    too_many = sqlite_error(tmp_path, f"SELECT * FROM t WHERE a IN ({many})")
    assert not is_transient(too_many)
    disk = sqlite3.OperationalError("disk I/O error")
    disk.sqlite_errorname = "SQLITE_IOERR"  # type: ignore[attr-defined]
    assert not is_transient(wrapped(disk, exc.OperationalError))

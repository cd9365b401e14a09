"""Which database failures are the database being unavailable (waited out) and which are a
statement failing (a bug or bad data: raised as they are)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc


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
        wrapped(DriverError("database is locked"), exc.OperationalError),
        wrapped(OSError("connection reset")),
    ],
)
def test_unavailable(error: BaseException) -> None:
    from heatup_daemon.db.store import is_transient

    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(DriverError("duplicate key", "23505"), exc.IntegrityError),
        wrapped(DriverError("syntax error", "42601"), exc.ProgrammingError),
        wrapped(DriverError("value too long", "22001"), exc.DataError),
        ValueError("a bug"),
    ],
)
def test_a_failing_statement_is_not_unavailability(error: BaseException) -> None:
    from heatup_daemon.db.store import is_transient

    assert not is_transient(error)

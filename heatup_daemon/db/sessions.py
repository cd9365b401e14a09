"""Reading ``sessions`` rows, whatever an admin wrote into them.

- ``admin_key()`` is an SQL expression over every admin-owned column (and ``state``, which
  an admin's ``sessions enable`` resets). ``sessions.applied_key`` holds its value as of the
  last time heatup applied the row: a row whose key differs was inserted or edited since (by
  the CLI or by hand in SQL), and only those are reconciled.
- ``record_columns()`` selects a whole row as a ``session.SessionRecord`` without letting a
  value break the query: times are read leniently (``LenientTime``), and ``enabled`` as
  ``True``/``False`` or, for anything else a hand edit left in SQLite, its text.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from sqlalchemy import Dialect, String, case, cast, func, literal, type_coerce
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

from heatup_daemon.db.dialect import times_as_text
from heatup_daemon.db.models import SessionRow
from heatup_daemon.enums import SessionState, Standing
from heatup_daemon.session import (
    KEY_FIELDS,
    KEY_SEPARATOR,
    TIME_FIELDS,
    SessionRecord,
    Stamp,
    read_time,
)


class LenientTime(TypeDecorator[Any]):
    """Reads a time column as an aware UTC datetime, or, when heatup cannot read the value
    as a time in range, as its text (never an error)."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if times_as_text(dialect.name):  # no parsing by the driver: the raw text or number
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_result_value(self, value: Any, dialect: Dialect) -> Stamp:
        return read_time(value)


def _text(column: Any) -> ColumnElement[str]:
    return func.coalesce(cast(column, String), literal(""))


def enabled_value(column: Any = SessionRow.enabled) -> ColumnElement[Any]:
    """An ``enabled`` column as 'on', 'off', or the text of whatever else it holds."""
    return case(
        (column.is_(True), literal("on")),
        (column.is_(False), literal("off")),
        else_=_text(column),
    )


def boolean_of(value: object) -> object:
    """What ``enabled_value`` read: ``True``, ``False``, or the other value as it was."""
    return {"on": True, "off": False}.get(value, value) if isinstance(value, str) else value


def standing_sql() -> ColumnElement[str]:
    """``session.standing`` in SQL: the same columns, in the same order (a test holds the
    two to each other on every combination of values)."""
    return case(
        (SessionRow.invalid_reason.is_not(None), literal(Standing.INVALID.value)),
        (SessionRow.enabled.is_not(True), literal(Standing.DISABLED.value)),
        (SessionRow.state != SessionState.ACTIVE.value, literal(Standing.NEEDS_ATTENTION.value)),
        else_=literal(Standing.ACTIVE.value),
    )


def born_sql() -> ColumnElement[Any]:
    """``session.born_at`` in SQL: the account's creation time where the row gives one,
    else the row's registration."""
    return func.coalesce(SessionRow.account_created_at, SessionRow.created_at)


def admin_key() -> ColumnElement[str]:
    parts: dict[str, ColumnElement[str]] = {
        "gateway_session_id": _text(SessionRow.gateway_session_id),
        "schedule": _text(SessionRow.schedule),
        "jitter_seconds": _text(SessionRow.jitter_seconds),
        "timezone": _text(SessionRow.timezone),
        "enabled": enabled_value(),
        "state": _text(SessionRow.state),
        "label": _text(SessionRow.label),
        "account_created_at": _text(SessionRow.account_created_at),
    }
    key = parts[KEY_FIELDS[0]]
    for name in KEY_FIELDS[1:]:
        key = key + literal(KEY_SEPARATOR) + parts[name]
    return key


_AS_READ: Final = (
    "id",
    "gateway_session_id",
    "label",
    "schedule",
    "jitter_seconds",
    "timezone",
    "state",
    "state_reason",
    "invalid_reason",
    "flood_wait_s",
    "applied_key",
)


def record_columns() -> list[KeyedColumnElement[Any]]:
    """The columns of a ``SessionRecord``, in a form no stored value can break."""
    table = SessionRow.__table__.c
    columns: list[KeyedColumnElement[Any]] = [table[name] for name in _AS_READ]
    columns += [type_coerce(table[name], LenientTime()).label(name) for name in TIME_FIELDS]
    columns.append(enabled_value().label("enabled_value"))
    columns.append(admin_key().label("key"))
    return columns


_RECORD_FIELDS: Final = frozenset(field.name for field in fields(SessionRecord))


def record_from(row: Any) -> SessionRecord:
    """The ``SessionRecord`` of a row selected with ``record_columns()`` (other columns the
    query added are left out)."""
    values = {name: value for name, value in row._mapping.items() if name in _RECORD_FIELDS}
    return SessionRecord(**values, enabled=boolean_of(row.enabled_value))

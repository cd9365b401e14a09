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
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Dialect, String, case, cast, func, literal, type_coerce
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

from heatup_daemon.db.models import SessionRow
from heatup_daemon.session import TIME_FIELDS, SessionRecord, Stamp
from heatup_daemon.slots import KEY_FIELDS, KEY_SEPARATOR

# Times outside these years are not read as times: PostgreSQL's +-infinity arrive as the
# first and last representable instants, and arithmetic on them overflows.
FIRST_YEAR: Final = 1970
LAST_YEAR: Final = 2999


class LenientTime(TypeDecorator[Any]):
    """Reads a time column as an aware UTC datetime, or, when heatup cannot read the value
    as a time in range, as its text (never an error)."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":  # no parsing by the driver: the raw text or number
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_result_value(self, value: Any, dialect: Dialect) -> Stamp:
        return read_time(value)


def read_time(value: Any) -> Stamp:
    if value is None:
        return None
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, datetime) or not FIRST_YEAR <= moment.year <= LAST_YEAR:
        return str(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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

"""What differs between heatup's two databases, SQLite and PostgreSQL, decided here.

Every difference turns on one question, ``is_sqlite`` (asked of a dialect's name, or of a
URL's through ``name_of``). Other modules ask it only to take SQLite's own machinery
(``engine`` sets SQLite's connections up, ``base.SqlStore`` runs its transactions in
``sqlite``'s threads); every other difference is a choice made here, by name:

- Times (``times_as_text``): SQLite has no time type, so a time is naive UTC text, which
  its driver hands over as stored; ``UTCDateTime`` writes and reads it, and ``time_checks``
  holds a column to a date and time. PostgreSQL's ``timestamptz`` is aware, parsed by its
  driver, and held to finite values.
- Whose clock the moments nodes share are on (a lease, a reap, a fence:
  ``on_database_clock``, ``shared_now``): PostgreSQL's ``now()``, for nodes on many hosts;
  on SQLite, where every process is on one host, the node's own.
- Row locks (``locks_rows``, ``locked``): PostgreSQL locks the rows a transaction reads to
  decide (``FOR UPDATE``); SQLite needs none, because a write transaction there holds the
  database's one write lock from its start (``BEGIN IMMEDIATE``).
- An INSERT that knows ``ON CONFLICT`` (``insert``): each dialect has its own construct.
- 64-bit ids (``BigId``): on SQLite only INTEGER PRIMARY KEY is an alias of the rowid.
- Partial indexes (``partial_index``): each dialect takes the condition under its own name.
- Altering a table (``rebuilds_tables``): SQLite rebuilds it (Alembic's batch mode, with
  foreign keys off meanwhile); PostgreSQL alters it in place, and migrating nodes take turns
  on an advisory lock.
- Text in code point order, as an index holds it for prefix ranges (``folded``): SQLite
  compares bytes already; PostgreSQL does so in the "C" collation.
- Where an index puts NULLs (``index_nulls_first``): SQLite before every value, always
  (and its DDL takes no NULLS clause); PostgreSQL after, unless told.
- Which index a query reads (``indexed_by``): SQLite's planner knows an index's size but
  not how its values are spread (no histograms in its usual builds), so a query that knows
  better names the index; PostgreSQL's statistics know, and it is left to choose.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, TypeVarTuple

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Index,
    Integer,
    Interval,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.types import TypeDecorator

Ts = TypeVarTuple("Ts")
SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"


def name_of(url: str | URL) -> str:
    """The dialect's name of a database URL (``sqlite``, ``postgresql``)."""
    return make_url(url).get_backend_name()


def is_sqlite(dialect: str) -> bool:
    """Whether ``dialect`` (a dialect's name: ``engine.dialect.name``) is SQLite; heatup's
    other database is PostgreSQL."""
    return dialect == SQLITE


# --- times ----------------------------------------------------------------------------------


def times_as_text(dialect: str) -> bool:
    """Whether times are stored as naive UTC text, handed over by the driver as stored."""
    return is_sqlite(dialect)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python on both databases (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: heatup stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if times_as_text(dialect.name) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # written by hand into SQLite
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def time_checks(column: str) -> tuple[CheckConstraint, CheckConstraint]:
    """A time column kept well-formed by the database itself: finite on PostgreSQL; on
    SQLite, where any column holds any value, text that SQLite reads as a date and time."""
    finite = CheckConstraint(f"{column} IS NULL OR isfinite({column})", name=f"{column}_finite")
    well_formed = CheckConstraint(
        f"{column} IS NULL OR (typeof({column}) = 'text' "
        f"AND {column} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' "
        f"AND datetime({column}) IS NOT NULL)",
        name=f"{column}_is_time",
    )
    return finite.ddl_if(dialect=POSTGRESQL), well_formed.ddl_if(dialect=SQLITE)


# --- the moment nodes share -----------------------------------------------------------------


def on_database_clock(dialect: str) -> bool:
    """Whether the moments nodes share are the database's clock's (else the node's)."""
    return not is_sqlite(dialect)


def shared_now(dialect: str, now: datetime, plus_s: float = 0.0) -> ColumnElement[datetime]:
    """The moment a decision that nodes share is made at, plus ``plus_s``: the database's
    ``now()`` (its transaction's start) or the node's ``now``."""
    if not on_database_clock(dialect):
        return literal(now + timedelta(seconds=plus_s), UTCDateTime())
    moment: ColumnElement[datetime] = func.now()
    if plus_s:
        moment = moment + literal(timedelta(seconds=plus_s), Interval())
    return type_coerce(moment, UTCDateTime())


def bound_shared_now(dialect: str, name: str) -> ColumnElement[datetime]:
    """``shared_now`` for a statement built once and run many times: the moment plus
    seconds bound as ``name``, whose value ``shared_values`` gives."""
    if not on_database_clock(dialect):
        return bindparam(name, type_=UTCDateTime())
    return type_coerce(func.now() + bindparam(name, type_=Interval()), UTCDateTime())


def shared_values(dialect: str, now: datetime, **plus_s: float) -> dict[str, Any]:
    """The values of ``bound_shared_now`` parameters: each name's seconds past the shared
    moment (an interval on the database's ``now()``, or the node's moment itself)."""
    if not on_database_clock(dialect):
        return {name: now + timedelta(seconds=s) for name, s in plus_s.items()}
    return {name: timedelta(seconds=s) for name, s in plus_s.items()}


# --- writes and locks -----------------------------------------------------------------------


def insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that knows ``ON CONFLICT`` on ``dialect``."""
    return sqlite.insert(table) if is_sqlite(dialect) else postgresql.insert(table)


def locks_rows(dialect: str) -> bool:
    """Whether transactions on ``dialect`` lock the rows they decide on."""
    return not is_sqlite(dialect)


def locked(
    dialect: str, query: Select[*Ts], of: Any, *, skip_taken: bool = False, key_share: bool = False
) -> Select[*Ts]:
    """``query``, locking the rows of ``of`` it reads where the database locks rows.

    A transaction waits for a row another one holds; with ``skip_taken`` it leaves that row
    to the other (a claim or a reap: another node is deciding the row right now). With
    ``key_share`` the lock only keeps the row from being deleted (or its key changed) until
    the transaction ends: ``FOR KEY SHARE``, which updates of other columns do not wait for.
    """
    if not locks_rows(dialect):
        return query
    return query.with_for_update(of=of, skip_locked=skip_taken, key_share=key_share)


def rebuilds_tables(dialect: str) -> bool:
    """Whether a migration alters a table by rebuilding it (else in place)."""
    return is_sqlite(dialect)


# --- the schema's constructs ----------------------------------------------------------------

BigId: Final = BigInteger().with_variant(Integer(), SQLITE)


def partial_index(name: str, *columns: Any, where: str, unique: bool = False) -> Index:
    """An index of the rows that ``where`` (SQL both databases read alike) holds for."""
    condition = text(where)
    return Index(name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition)


class folded(FunctionElement[str]):
    """``lower(text)``, compared in code point order on both databases: an index on it
    serves a prefix as a range (``>= prefix`` and ``< prefix_end``)."""

    type = String()
    name = "folded"
    inherit_cache = True


@compiles(folded)
def _folded(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, POSTGRESQL)
def _folded_postgresql(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f'(lower({compiler.process(element.clauses, **kw)}) COLLATE "C")'


def prefix_end(prefix: str) -> str | None:
    """The first text past every text that starts with ``prefix`` in code point order (None:
    nothing is past it)."""
    for index in range(len(prefix) - 1, -1, -1):
        if ord(prefix[index]) < 0x10FFFF:
            return prefix[:index] + chr(ord(prefix[index]) + 1)
    return None


class index_nulls_first(ColumnElement[Any]):
    """An index column with its NULLs first, as SQLite puts them anyway."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        self.column = column


@compiles(index_nulls_first)
def _nulls_first(element: index_nulls_first, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(index_nulls_first, POSTGRESQL)
def _nulls_first_postgresql(element: index_nulls_first, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} NULLS FIRST"


class _IndexedBy(Alias):
    """A table read through ``index`` on SQLite, and as itself elsewhere (one subclass per
    index, so that the statement cache tells them apart)."""

    inherit_cache = True
    index: ClassVar[str]


_INDEXED: Final[dict[str, type[_IndexedBy]]] = {}


def indexed_by(table: Table, index: str) -> Alias:
    """``table`` as a FROM that SQLite reads through ``index`` (``ClauseAdapter`` moves a
    query's columns onto it)."""
    kind = _INDEXED.get(index)
    if kind is None:
        attributes = {"index": index, "inherit_cache": True}
        kind = _INDEXED.setdefault(index, type(f"IndexedBy_{index}", (_IndexedBy,), attributes))
    return kind._construct(table, name=table.name)


@compiles(_IndexedBy)
def _indexed_by(element: _IndexedBy, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.preparer.format_table(element.element))


@compiles(_IndexedBy, SQLITE)
def _indexed_by_sqlite(element: _IndexedBy, compiler: SQLCompiler, **kw: Any) -> str:
    name = str(compiler.preparer.format_table(element.element))
    return f"{name} INDEXED BY {element.index}" if kw.get("asfrom") else name

"""What differs between heatup's two databases, decided here and nowhere else.

- An INSERT that knows ``ON CONFLICT``: each dialect has its own construct.
- Row locks: PostgreSQL locks the rows a transaction reads to decide (``FOR UPDATE``);
  SQLite needs none, because a write transaction there holds the database's one write lock
  from its start (``BEGIN IMMEDIATE``).
- Text in code point order, as an index holds it for prefix ranges (``folded``): SQLite
  compares bytes already; PostgreSQL does so in the "C" collation.
- Where an index puts NULLs (``index_nulls_first``): SQLite before every value, always
  (and its DDL takes no NULLS clause); PostgreSQL after, unless told.
- Which index a query reads (``indexed_by``): SQLite's planner knows an index's size but
  not how its values are spread (no histograms in its usual builds), so a query that knows
  better names the index; PostgreSQL's statistics know, and it is left to choose.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, TypeVarTuple

from sqlalchemy import Select, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Alias

Ts = TypeVarTuple("Ts")


def insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that knows ``ON CONFLICT`` on ``dialect``."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def locks_rows(dialect: str) -> bool:
    """Whether transactions on ``dialect`` lock the rows they decide on."""
    return dialect == "postgresql"


def locked(dialect: str, query: Select[*Ts], of: Any, *, skip_taken: bool = False) -> Select[*Ts]:
    """``query``, locking the rows of ``of`` it reads where the database locks rows.

    A transaction waits for a row another one holds; with ``skip_taken`` it leaves that row
    to the other (a claim or a reap: another node is deciding the row right now).
    """
    if not locks_rows(dialect):
        return query
    return query.with_for_update(of=of, skip_locked=skip_taken)


class folded(FunctionElement[str]):
    """``lower(text)``, compared in code point order on both databases: an index on it
    serves a prefix as a range (``>= prefix`` and ``< prefix_end``)."""

    type = String()
    name = "folded"
    inherit_cache = True


@compiles(folded)
def _folded(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, "postgresql")
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


@compiles(index_nulls_first, "postgresql")
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


@compiles(_IndexedBy, "sqlite")
def _indexed_by_sqlite(element: _IndexedBy, compiler: SQLCompiler, **kw: Any) -> str:
    name = str(compiler.preparer.format_table(element.element))
    return f"{name} INDEXED BY {element.index}" if kw.get("asfrom") else name

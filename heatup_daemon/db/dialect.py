"""What differs between heatup's two databases, decided here and nowhere else.

- An INSERT that knows ``ON CONFLICT``: each dialect has its own construct.
- Row locks: PostgreSQL locks the rows a transaction reads to decide (``FOR UPDATE``);
  SQLite needs none, because a write transaction there holds the database's one write lock
  from its start (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from typing import Any, TypeVarTuple

from sqlalchemy import Select
from sqlalchemy.dialects import postgresql, sqlite

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

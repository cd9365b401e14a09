"""The repository: every database operation heatup performs, and the only code that opens a
database session. It implements the ports of ``heatup_daemon.stores`` (each consumer is
given only the one it needs); its parts live beside it: ``registry`` (sessions, channels),
``runs`` (runs, actions, the session state runs change), ``ledger`` (the join ledger),
``scheduling`` (reconcile,
claims, housekeeping), ``leases`` (the nodes' leases and the reaper), ``console`` (what
the web console reads) and ``activity`` (the history by the hour)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db.activity import ActivitySql
from heatup_daemon.db.console import ConsoleSql
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.leases import LeaseSql
from heatup_daemon.db.ledger import LedgerSql
from heatup_daemon.db.registry import RegistrySql
from heatup_daemon.db.runs import RunSql
from heatup_daemon.db.scheduling import SchedulingSql

__all__ = ["Repository", "open_repository"]


class Repository(RegistrySql, RunSql, LedgerSql, SchedulingSql, LeaseSql, ConsoleSql, ActivitySql):
    """All of heatup's database operations over one engine. Construct once per process."""


@asynccontextmanager
async def open_repository(settings: DatabaseSettings) -> AsyncIterator[Repository]:
    """A repository on the configured database; on exit, its operations in flight finish
    and its engines are closed."""
    engine = create_engine(settings)
    try:
        repository = Repository(engine, settings.sqlite_busy_timeout_ms)
        try:
            yield repository
        finally:
            await repository.close()
    finally:
        await engine.dispose()

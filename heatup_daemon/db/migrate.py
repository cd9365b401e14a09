"""Running heatup's Alembic migrations from inside the program.

The migrations are the only way the schema changes. They ship inside the package
(``heatup_daemon.migrations``, the top-level ``migrations/`` folder of a checkout), so an
installed ``heatup db upgrade`` needs no checkout and no ``alembic.ini``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from heatup_daemon.db import dialect
from heatup_daemon.errors import BadRevision, HeatupError, SchemaNotAtHead

# pg_advisory_xact_lock key of schema migrations ("heatup" in ASCII).
MIGRATION_LOCK: Final = 0x686561747570

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where it is used: most commands never migrate, and importing it is a
# large share of the command line's start-up time.


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config(stdout=sys.stdout)  # its default is bound when alembic is imported
    config.set_main_option("script_location", str(files("heatup_daemon.migrations")))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise HeatupError("no migrations found in the heatup_daemon.migrations package")
    return head


# Indexes on expressions: Alembic cannot compare them (SQLite does not even reflect them),
# so ``alembic check`` leaves them out; tests read the query plans that use them instead.
EXPRESSION_INDEXES: Final = frozenset(
    {"ix_sessions_standing", "ix_sessions_label_folded", "ix_sessions_last_run_at"}
)


def _compared(item: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
    return not (kind == "index" and name in EXPRESSION_INDEXES)


def configure_and_run(context: Any, connection: Connection, metadata: MetaData) -> None:
    """Run the migrations Alembic selected on ``connection`` (called from ``env.py``).

    PostgreSQL: the migration holds an advisory lock until it commits, so several nodes
    upgrading at once take turns, and the later ones find the schema at head already.
    SQLite rebuilds tables to alter them (batch mode); foreign keys are switched off
    meanwhile, or dropping the old copy of a table would cascade into its children.
    """
    rebuilds = dialect.rebuilds_tables(connection.dialect.name)
    if rebuilds:
        _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    else:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=rebuilds,
        compare_type=True,
        include_object=_compared,
    )
    with context.begin_transaction(), warnings.catch_warnings():
        # SQLite's reflection skips an expression index, and Alembic then the model's, each
        # with a warning: ``_compared`` leaves them out of the comparison anyway.
        warnings.filterwarnings("ignore", "(Skipped|autogenerate skipping) .*expression-based")
        context.run_migrations()
    if rebuilds:
        broken = _sqlite_pragma(connection, "PRAGMA foreign_key_check")
        _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
        if broken:
            raise HeatupError(f"migration left {len(broken)} rows with broken foreign keys")


def _sqlite_pragma(connection: Connection, statement: str) -> list[Any]:
    """Run a PRAGMA on the driver's connection, outside any transaction (SQLite ignores
    ``foreign_keys`` inside one)."""
    dbapi_connection: Any = connection.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        return list(cursor.fetchall())
    finally:
        cursor.close()


async def run_alembic(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    """Run an Alembic command (``action(config)``) on a connection of ``engine``."""
    async with engine.connect() as connection:

        def run(sync_connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = sync_connection
            action(config)

        await connection.run_sync(run)
        await connection.commit()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic import command

    await _move(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command

    await _move(engine, lambda config: command.downgrade(config, revision))


async def _move(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    from alembic.util import CommandError

    try:
        await run_alembic(engine, action)
    except CommandError as exc:  # an unknown or unreachable revision
        raise BadRevision(str(exc)) from None


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def ensure_at_head(engine: AsyncEngine) -> None:
    """Raise ``SchemaNotAtHead`` unless the database is at the newest migration."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        where = "has no heatup schema" if current is None else f"is at revision {current}"
        raise SchemaNotAtHead(f"the database {where}, heatup needs {head}: run `heatup db upgrade`")

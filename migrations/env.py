"""Alembic environment for heatup: async engines, batch mode on SQLite.

Two ways in:
- ``heatup db ...`` (and the daemon) pass an open connection in
  ``config.attributes["connection"]``; nothing here touches logging then, so the
  application's loggers stay as they are.
- the ``alembic`` command from a checkout: the URL is ``-x database_url=...`` or heatup's
  configured ``database.url``, and ``alembic.ini`` configures logging.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from heatup_daemon.config.file import load_settings
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.migrate import configure_and_run
from heatup_daemon.db.models import Base

config = context.config


def _run_with_connection(connection: Connection) -> None:
    configure_and_run(context, connection, Base.metadata)


async def _run_standalone() -> None:
    url = context.get_x_argument(as_dictionary=True).get("database_url")
    settings = DatabaseSettings(url=url) if url else load_settings().database
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_with_connection)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("heatup's migrations run online only: give a database, not --sql")

existing = config.attributes.get("connection")
if existing is not None:
    _run_with_connection(existing)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_standalone())

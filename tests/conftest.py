from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy.ext.asyncio import AsyncEngine

from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db import migrate
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.repository import Repository
from tests.databases import (
    TEST_DATABASE_ENV,
    create_postgres_database,
    drop_postgres_database,
    postgres_server_url,
)
from tests.figures import Figures

BACKENDS = ["sqlite"] + (["postgresql"] if postgres_server_url() else [])

# No per-example deadline: a busy CI machine must not turn a slow example into a failure.
settings.register_profile("heatup", deadline=None)
settings.load_profile("heatup")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        "--long-faults",  # its name before every slow test had a long variant
        action="store_true",
        dest="long",
        help="run the long variants of the slow tests (minutes each) instead of the short ones",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # pytest-xdist's workers send their reports on
        config.pluginmanager.register(Figures(), "heatup-figures")


@pytest.fixture
def long_variant(request: pytest.FixtureRequest) -> bool:
    """Whether to run a slow test's long variant (``pytest --long``): more of the same
    (kills, phases, examples, minutes), where the short one, which the test command runs,
    already checks every promise once."""
    return bool(request.config.getoption("long"))


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's HEATUP_* variables, credentials or working directory."""
    for name in list(os.environ):
        if name.startswith("HEATUP_") and name != TEST_DATABASE_ENV:
            monkeypatch.delenv(name)
    for name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("heatup_daemon.config.file.SYSTEM_CONFIG_PATH", tmp_path / "no-system.toml")
    monkeypatch.chdir(tmp_path)


@contextlib.contextmanager
def empty_database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in ``folder``, or (``postgresql``) a
    database of its own on the server of ``HEATUP_TEST_DATABASE_URL``, dropped after."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'test.db'}"
        return
    server = postgres_server_url()
    assert server is not None
    url = create_postgres_database(server)
    try:
        yield url
    finally:
        drop_postgres_database(server, url)


@contextlib.asynccontextmanager
async def checked_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``database_url``; the test fails if it leaves a connection checked out."""
    engine = create_engine(DatabaseSettings(url=database_url))
    try:
        yield engine
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        assert checked_out == 0, f"the test leaked {checked_out} database connection(s)"
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def migrated_repository(database_url: str) -> AsyncIterator[Repository]:
    """A repository on a database migrated to head (and the engine checks above)."""
    async with checked_engine(database_url) as engine:
        await migrate.upgrade(engine)
        repository = Repository(engine)
        try:
            yield repository
        finally:
            await repository.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: SQLite always, PostgreSQL too when HEATUP_TEST_DATABASE_URL is set."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty database; the test fails if it leaves a connection checked out."""
    async with checked_engine(database_url) as engine:
        yield engine


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[Repository]:
    """A repository on a database migrated to head."""
    async with migrated_repository(database_url) as repository:
        yield repository


def _fail_on_leaked_tasks(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def checked(*args: object, **kwargs: object) -> None:
        before = asyncio.all_tasks()
        await test(*args, **kwargs)
        current = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        for task in leaked:
            task.cancel()
        assert not leaked, f"the test left tasks running: {leaked}"

    return checked


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test fails if it leaves a task running. The slow tests come first: on
    pytest-xdist's workers, the quick ones then fill the gaps instead of a slow one starting
    last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _fail_on_leaked_tasks(item.obj)

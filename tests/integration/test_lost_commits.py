"""Commits whose answer was lost, on PostgreSQL behind a proxy that cuts the connection
right after the server committed: a claim's, and an API start's. The node reads back what
happened and runs what landed, exactly once; the API answers with the run that exists."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
from sqlalchemy.engine import make_url

from heatup_daemon.api import ApiState, create_app
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db import migrate
from heatup_daemon.db.engine import create_engine
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import Job, RunStatus
from heatup_daemon.testing import FakeGateway
from tests.databases import create_postgres_database, drop_postgres_database, postgres_server_url
from tests.proxy import CommitCutter
from tests.worlds import World

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied() -> Iterator[tuple[CommitCutter, str]]:
    """A fresh PostgreSQL database, and its URL through a ``CommitCutter``."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("lost commits need PostgreSQL (tests/run finds the local server)")
    url = create_postgres_database(server)
    direct = make_url(url)
    proxy = CommitCutter(direct.host or "127.0.0.1", direct.port or 5432)
    try:
        through = direct.set(host="127.0.0.1", port=proxy.port, query={"ssl": "disable"})
        yield proxy, through.render_as_string(hide_password=False)
    finally:
        proxy.close()
        drop_postgres_database(server, url)


@pytest.fixture
async def world(proxied: tuple[CommitCutter, str]) -> AsyncIterator[World]:
    _, url = proxied
    engine = create_engine(DatabaseSettings(url=url))
    await migrate.upgrade(engine)
    repository = Repository(engine)
    world = World(repository, gateway=FakeGateway())
    await world.node()
    for gateway_id in (1, 2, 3):
        await world.add(gateway_id, "1h")
    await world.scheduler.prepare()
    try:
        yield world
    finally:
        await repository.close()
        await engine.dispose()


async def runs_by_status(world: World) -> list[tuple[int, str]]:
    found = []
    for gateway_id in (1, 2, 3):
        found += [
            (run.gateway_session_id, run.status) for run in await world.store.history(gateway_id)
        ]
    return sorted(found)


async def test_a_claim_whose_commit_answer_was_lost_runs_exactly_once(
    world: World, proxied: tuple[CommitCutter, str]
) -> None:
    proxy, _ = proxied
    dispatch = world.scheduler.jobs.guarded(Job.DISPATCH, world.scheduler.dispatch)
    proxy.arm(b"INSERT INTO warmup_runs")
    assert await dispatch() is False  # the claim's answer never came
    assert proxy.cut.is_set()
    assert len(world.in_flight) == 0  # so nothing runs yet, though the rows are there:
    assert await runs_by_status(world) == [(1, "running"), (2, "running"), (3, "running")]
    assert await dispatch() is True  # the database answers: the node reads back, adopts
    await world.settle()
    assert await runs_by_status(world) == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]
    assert world.sample("heatup_runs_total", status="succeeded", trigger="schedule") == 3


async def test_an_api_start_whose_commit_answer_was_lost_answers_with_its_run(
    world: World, proxied: tuple[CommitCutter, str]
) -> None:
    proxy, _ = proxied
    node = world.nodes[-1]

    async def healthy() -> dict[str, str]:
        return {}

    state = ApiState(
        settings=world.settings,
        registry=world.store,  # type: ignore[arg-type]
        runner=node.runner,
        in_flight=node.in_flight,
        health=healthy,
        exposition=node.metrics.exposition,
        clock=world.clock,
    )
    transport = httpx2.ASGITransport(app=create_app(state))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as api:
        proxy.arm(b"INSERT INTO warmup_runs")
        answer = await api.post("/warmup-sync/2")
    assert proxy.cut.is_set()
    assert answer.status_code == 200, answer.text
    [run] = await world.store.history(2)
    assert answer.json()["run"]["id"] == run.id and run.status is RunStatus.SUCCEEDED

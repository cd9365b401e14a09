from __future__ import annotations

import pytest
from sqlalchemy import text

from heatup_daemon.config import Settings
from heatup_daemon.db.repository import Repository
from heatup_daemon.errors import AlreadyExists, NotFound
from heatup_daemon.validation import validate_channel, validate_session


def spec(gateway_id: int = 1, schedule: str = "6h", **changes: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = dict(
        gateway_session_id=gateway_id,
        schedule=schedule,
        jitter_seconds=60,
        timezone="UTC",
        label=None,
    )
    values.update(changes)
    return validate_session(**values)  # type: ignore[arg-type]


async def test_session_life_cycle(repository: Repository) -> None:
    view = await repository.add_session(spec(7, "*/5 * * * *", timezone="Europe/Berlin"))
    assert (view.gateway_session_id, view.schedule, view.timezone) == (
        7,
        "*/5 * * * *",
        "Europe/Berlin",
    )
    assert view.enabled and view.state == "active" and view.created_at.tzinfo is not None

    with pytest.raises(AlreadyExists, match="gateway id 7 is already registered"):
        await repository.add_session(spec(7))
    assert len(await repository.list_sessions()) == 1

    assert not (await repository.set_session_enabled(7, False)).enabled
    assert (await repository.set_session_enabled(7, True)).enabled
    await repository.remove_session(7)
    assert await repository.list_sessions() == []
    for call in (
        repository.get_session(7),
        repository.set_session_enabled(7, True),
        repository.remove_session(7),
    ):
        with pytest.raises(NotFound, match="no session with gateway id 7"):
            await call


async def test_enabling_clears_needs_attention(repository: Repository) -> None:
    await repository.add_session(spec(3))
    async with repository.engine.begin() as connection:
        await connection.execute(
            text("UPDATE sessions SET state = 'needs_attention', state_reason = 'frozen'")
        )
    view = await repository.set_session_enabled(3, True)
    assert (view.state, view.state_reason) == ("active", None)


async def test_channels(repository: Repository) -> None:
    nasa = validate_channel(username="@NASA", title="NASA", category="science", description=None)
    assert (await repository.add_channel(nasa)).username == "nasa"
    with pytest.raises(AlreadyExists, match="@nasa is already in the pool"):
        await repository.add_channel(nasa)
    await repository.set_channel_enabled("nasa", False)
    assert [(c.username, c.enabled) for c in await repository.list_channels()] == [("nasa", False)]
    with pytest.raises(NotFound, match="@absent is not in the pool"):
        await repository.set_channel_enabled("absent", False)


async def test_seeding_fills_only_an_empty_pool(repository: Repository) -> None:
    pool = Settings().channels
    assert await repository.seed_channels(pool) == len(pool)
    assert await repository.seed_channels(pool) == 0
    channels = await repository.list_channels()
    assert {c.username for c in channels} == {entry.username for entry in pool}

from __future__ import annotations

import pytest
from sqlalchemy import text

from heatup_daemon.config.settings import Settings
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import Actor, Surface
from heatup_daemon.errors import AlreadyExists, NotFound
from heatup_daemon.validation import validate_channel, validate_session
from heatup_daemon.views import Author


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


async def test_every_change_is_audited_with_its_author_before_and_after(
    repository: Repository,
) -> None:
    console = Author(Surface.CONSOLE, Actor.TOKEN)
    await repository.add_session(spec(4, label="first"), by=console)
    await repository.edit_session(spec(4, "1d", label=None, jitter_seconds=600))
    await repository.set_session_enabled(4, False, by=Author(Surface.API, Actor.NO_TOKEN))
    await repository.remove_session(4, by=console)
    entries = await repository.audit_of(4, 10)
    assert [(e.action, e.via, e.actor) for e in entries] == [
        ("remove", "console", "api.token"),
        ("disable", "api", "no token"),
        ("edit", "cli", "cli"),
        ("register", "console", "api.token"),
    ]
    removed, disabled, edited, registered = entries
    assert registered.before is None and registered.after is not None
    assert registered.after["label"] == "first" and registered.after["schedule"] == "6h"
    assert edited.changed == [
        ("schedule", "6h", "1d"),
        ("jitter_seconds", 60, 600),
        ("label", "first", None),
    ]
    assert disabled.changed == [("enabled", True, False)]
    assert removed.after is None and removed.before is not None  # kept after the row is gone
    assert all(entry.at.tzinfo is not None for entry in entries)
    assert await repository.audit_of(5, 10) == []


async def test_a_refused_change_writes_no_audit(repository: Repository) -> None:
    await repository.add_session(spec(6))
    with pytest.raises(AlreadyExists):
        await repository.add_session(spec(6))
    with pytest.raises(NotFound):
        await repository.edit_session(spec(7))
    assert [entry.action for entry in await repository.audit_of(6, 10)] == ["register"]
    assert await repository.audit_of(7, 10) == []


async def test_channel_changes_are_audited(repository: Repository) -> None:
    spec_ = validate_channel(username="@Audited_1", title="A", category=None, description=None)
    await repository.add_channel(spec_, by=Author(Surface.CONSOLE, Actor.NO_TOKEN))
    await repository.set_channel_enabled("audited_1", False)
    async with repository.engine.connect() as connection:
        rows = (
            await connection.execute(text("SELECT action, via, channel FROM audit_log ORDER BY id"))
        ).all()
    assert [tuple(row) for row in rows] == [
        ("add channel", "console", "audited_1"),
        ("disable channel", "cli", "audited_1"),
    ]


async def test_an_import_is_one_transaction_that_a_registered_id_refuses(
    repository: Repository,
) -> None:
    await repository.add_session(spec(2))
    rows = [(spec(n), n != 3) for n in (1, 2, 3)]
    refused = await repository.import_sessions(rows, skip_registered=False)
    assert (refused.registered, refused.written) == ({2}, 0)
    assert [s.gateway_session_id for s in await repository.list_sessions()] == [2]
    taken = await repository.import_sessions(rows, skip_registered=True)
    assert (taken.registered, taken.written) == ({2}, 2)
    listed = {s.gateway_session_id: s.enabled for s in await repository.list_sessions()}
    assert listed == {1: True, 2: True, 3: False}
    (entry,) = await repository.audit_of(3, 10)
    assert (entry.action, entry.via, entry.before) == ("register", "cli", None)
    assert entry.after is not None and entry.after["enabled"] is False
    assert [s.gateway_session_id for s in await repository.session_batch(0, 2)] == [2, 1]

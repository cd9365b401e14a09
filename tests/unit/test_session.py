"""A session's account age: one rule for when the account was born and how old it is, which
the ramp, the warmth report and both stores' counts by age all use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heatup_daemon.session import (
    KEY_FIELDS,
    admin_key_of,
    age_days,
    born_at,
    born_by,
    key_fields,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REGISTERED = datetime(2026, 11, 1, tzinfo=UTC)


def test_an_account_is_born_when_created_else_when_registered() -> None:
    created = datetime(2024, 5, 1, tzinfo=UTC)
    assert born_at(created, REGISTERED) == created
    assert born_at(None, REGISTERED) == REGISTERED
    assert born_at("not a time", REGISTERED) == "not a time"  # as SQL's coalesce reads it


@pytest.mark.parametrize(
    ("born", "days"),
    [
        (NOW, 0),
        (NOW - timedelta(hours=23, minutes=59), 0),
        (NOW - timedelta(days=1), 1),
        (NOW - timedelta(days=6, hours=23), 6),
        (NOW - timedelta(days=30, seconds=1), 30),
        (NOW + timedelta(days=2), 0),  # a date ahead of the clock: not yet a day old
    ],
)
def test_the_age_in_whole_days(born: datetime, days: int) -> None:
    assert age_days(born, NOW) == days


def test_born_by_is_the_age_as_a_bound_on_the_birth() -> None:
    """What the stores count in SQL (``born <= born_by``) is what ``age_days`` says."""
    for minutes in range(0, 40 * 24 * 60, 97):
        born = NOW - timedelta(minutes=minutes)
        for days in (0, 1, 3, 7, 30):
            assert (age_days(born, NOW) >= days) == (born <= born_by(NOW, days)), (born, days)


def test_the_admin_key_reads_back_field_by_field() -> None:
    row: dict[str, object] = {name: None for name in KEY_FIELDS}
    row.update(gateway_session_id=7, schedule="6h", enabled=True, label="office")
    fields = key_fields(admin_key_of(row))
    assert fields["gateway_session_id"] == "7"
    assert fields["enabled"] == "on"
    assert fields["timezone"] == ""
    assert fields["label"] == "office"
    assert key_fields(None) == {}

"""The join ramp: stages by age, allowances, and the warmth report's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heatup_daemon.ramp import Ramp, stage_counts
from heatup_daemon.records import JoinLimits


@pytest.mark.parametrize(
    ("age_days", "per_day", "label"),
    [
        (0, 1, "day_0"),
        (1, 2, "days_1_2"),
        (2, 2, "days_1_2"),
        (3, 3, "days_3_6"),
        (6, 3, "days_3_6"),
        (7, 5, "days_7_29"),
        (29, 5, "days_7_29"),
        (30, 8, "days_30_plus"),
        (4000, 8, "days_30_plus"),
    ],
)
def test_the_default_ramp(age_days: int, per_day: int, label: str) -> None:
    ramp = Ramp()
    assert ramp.joins_per_day(age_days) == per_day
    assert ramp.label(ramp.stage(age_days)) == label


def test_allowance_counts_what_the_last_24_hours_took() -> None:
    limits = JoinLimits(per_day=Ramp().joins_per_day(8), per_channel_hour=3)
    assert [limits.joins_left(taken) for taken in range(7)] == [5, 4, 3, 2, 1, 0, 0]
    assert [limits.room(taken) for taken in range(5)] == [3, 2, 1, 0, -1]


def test_stage_counts_from_cumulative_ages() -> None:
    counts = stage_counts(Ramp(), [100, 80, 50, 20, 5])
    assert counts == {
        "day_0": 20,
        "days_1_2": 30,
        "days_3_6": 30,
        "days_7_29": 15,
        "days_30_plus": 5,
    }
    assert sum(counts.values()) == 100


def test_a_custom_ramp_names_its_stages() -> None:
    ramp = Ramp(((0, 0), (2, 1), (10, 4)))
    assert ramp.labels == ("days_0_1", "days_2_9", "days_10_plus")
    assert ramp.joins_per_day(1) == 0 and ramp.joins_per_day(10) == 4


def test_account_age_is_whole_days() -> None:
    from heatup_daemon.ramp import JoinPolicy
    from heatup_daemon.session import Session
    from heatup_daemon.validation import validate_session

    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    spec = validate_session(
        gateway_session_id=1, schedule="1h", jitter_seconds=0, timezone="UTC", label=None
    )
    session = Session(
        1,
        1,
        None,
        spec.schedule,
        0,
        spec.timezone,
        True,
        "active",
        None,
        None,  # type: ignore[arg-type]
        now - timedelta(days=6, hours=23),
    )
    assert session.age_days(now) == 6
    assert JoinPolicy(Ramp(), 20).limits(session, now).per_day == 3

"""Crontab fields mean what crontab(5) says: weekday numbers, names, the either-day rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from heatup_daemon.errors import InvalidValue
from heatup_daemon.timing.cron import CronTimes, parse_cron

# 2026-11-29 is a Sunday.
SUNDAY = datetime(2026, 11, 29, tzinfo=UTC)


def fires(text: str, count: int, start: datetime = SUNDAY) -> list[str]:
    times = CronTimes(parse_cron(text), UTC)
    found, at = [], start
    for _ in range(count):
        at = times.after(at)
        found.append(f"{at:%a %d}")
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 9 * * 0", ["Sun 29", "Sun 06"]),
        ("0 9 * * 7", ["Sun 29", "Sun 06"]),
        ("0 9 * * sun", ["Sun 29", "Sun 06"]),
        ("0 9 * * 1-5", ["Mon 30", "Tue 01", "Wed 02", "Thu 03", "Fri 04", "Mon 07"]),
        ("0 9 * * mon-fri", ["Mon 30", "Tue 01", "Wed 02", "Thu 03", "Fri 04", "Mon 07"]),
        ("0 9 * * 0,6", ["Sun 29", "Sat 05", "Sun 06"]),
        ("0 9 * * 5-7", ["Sun 29", "Fri 04", "Sat 05", "Sun 06"]),
        ("0 9 * * */2", ["Sun 29", "Tue 01", "Thu 03", "Sat 05", "Sun 06"]),
        ("0 9 * * 1-5/2", ["Mon 30", "Wed 02", "Fri 04", "Mon 07"]),
    ],
)
def test_weekdays_count_from_sunday(text: str, expected: list[str]) -> None:
    assert fires(text, len(expected)) == expected


def test_either_day_field_matches_when_both_are_restricted() -> None:
    # The 1st of the month, and every Monday.
    assert fires("0 9 1 * 1", 4) == ["Mon 30", "Tue 01", "Mon 07", "Mon 14"]


def test_a_day_field_starting_with_a_star_narrows_the_other() -> None:
    # Odd days of the month that are Mondays: both must match (crontab's rule for a '*').
    assert fires("0 9 */2 * 1", 2) == ["Mon 07", "Mon 21"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0 9 * * 8", "weekday '8' is not 0-7"),
        ("0 9 * * funday", "weekday 'funday'"),
        ("0 9 * * 5-1", "runs backwards"),
        ("0 9 * * 3/2", r"a step needs \* or a range"),
        ("0 9 * * */0", "not a positive number"),
        ("0 9 31 2 *", "never fires"),
        ("0 9 * *", "has 4 fields"),
    ],
)
def test_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        parse_cron(text)


def test_an_hour_field_starting_with_a_star_fires_by_elapsed_time() -> None:
    assert parse_cron("*/15 * * * *").by_elapsed_time
    assert parse_cron("0 */2 * * *").by_elapsed_time
    assert not parse_cron("*/15 9 * * *").by_elapsed_time
    assert not parse_cron("0 0-23 * * *").by_elapsed_time

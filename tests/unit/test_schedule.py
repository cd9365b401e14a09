from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatup_daemon.errors import InvalidValue
from heatup_daemon.timing.schedule import (
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    UNIT_SECONDS,
    CronSchedule,
    IntervalSchedule,
    format_interval,
    parse_schedule,
)


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("6h", 21600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("2H", 7200),
        (" 6h ", 21600),
        ("10s", 10),
        ("366d", 366 * 86400),
    ],
)
def test_intervals(spec: str, seconds: int) -> None:
    assert parse_schedule(spec) == IntervalSchedule(seconds)


@pytest.mark.parametrize(
    ("spec", "expression"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("0 9 * * mon-fri", "0 9 * * mon-fri"),
        ("0   3  1 * *", "0 3 1 * *"),
        ("30 */6 * * *", "30 */6 * * *"),
    ],
)
def test_cron(spec: str, expression: str) -> None:
    assert parse_schedule(spec) == CronSchedule(expression)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("6", "neither an interval"),
        ("6x", "neither an interval"),
        ("h6", "neither an interval"),
        ("-6h", "neither an interval"),
        ("1.5h", "neither an interval"),
        ("9s", "allowed: 10s to 366d"),
        ("0m", "allowed"),
        ("367d", "allowed"),
        ("* * * *", "has 4 fields"),
        ("* * * * * *", "has 6 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("* 25 * * *", "not a valid cron expression"),
        ("* * * * funday", "not a valid cron expression"),
        ("x" * 101, "longer than 100"),
    ],
)
def test_rejected(spec: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        parse_schedule(spec)


@given(st.text(max_size=120))
def test_any_text_parses_or_gives_one_line_reason(spec: str) -> None:
    try:
        schedule = parse_schedule(spec)
    except InvalidValue as exc:
        assert "\n" not in str(exc).replace(repr(spec), "")
    else:
        assert isinstance(schedule, IntervalSchedule | CronSchedule)
        assert parse_schedule(schedule.text) == schedule  # the stored text reads back the same


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=500), st.sampled_from(sorted(UNIT_SECONDS))),
        min_size=1,
        max_size=4,
    )
)
def test_interval_value_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    spec = "".join(f"{count}{unit}" for count, unit in parts)
    expected = sum(count * UNIT_SECONDS[unit] for count, unit in parts)
    if MIN_INTERVAL_S <= expected <= MAX_INTERVAL_S:
        assert parse_schedule(spec) == IntervalSchedule(expected)
    else:
        with pytest.raises(InvalidValue):
            parse_schedule(spec)


@given(st.integers(min_value=MIN_INTERVAL_S, max_value=MAX_INTERVAL_S))
def test_format_interval_round_trips(seconds: int) -> None:
    assert parse_schedule(format_interval(seconds)) == IntervalSchedule(seconds)

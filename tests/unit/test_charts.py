"""The console's charts: bars proportional to their counts, stacked in order, an hour not
counted left out, the pace marked and a channel past it drawn as such."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heatup_daemon.api import charts
from heatup_daemon.api.charts import BOTTOM, HEIGHT, TOP, hourly, last_hours, nice_ceiling

NOON = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (4_200, 5_000)],
)
def test_the_axis_ends_on_a_round_number(value: int, ceiling: int) -> None:
    assert nice_ceiling(value) == ceiling


def test_an_hours_bars_stack_in_order_and_scale_to_the_axis() -> None:
    hours = last_hours(NOON, 3)
    assert hours == [NOON - timedelta(hours=2), NOON - timedelta(hours=1), NOON]
    counts = {hours[0]: {"failed": 10, "succeeded": 40}, hours[2]: {"succeeded": 100}}
    chart = hourly(
        "runs",
        hours,
        counts,
        order=["succeeded", "failed"],
        prefix="status",
        tick_every=1,
        tick_format="%H",
    )
    plot = HEIGHT - BOTTOM - TOP
    first, second, third = chart.bars
    assert (first.kind, second.kind, third.kind) == (
        "status-succeeded", "status-failed", "status-succeeded"
    )  # fmt: skip
    assert first.height == pytest.approx(plot * 0.4)  # of an axis topped at 100
    assert second.y + second.height == pytest.approx(first.y)  # stacked on the first
    assert third.height == pytest.approx(plot)
    assert "10:00Z: 10 failed" in second.title
    assert first.x < third.x  # the hour between, not counted, has no bar
    assert [tick.text for tick in chart.y_ticks] == ["0", "50", "100"]
    assert not chart.empty


def test_a_chart_with_nothing_counted_says_so() -> None:
    chart = hourly(
        "runs",
        last_hours(NOON, 24),
        {},
        order=["succeeded"],
        prefix="status",
        tick_every=3,
        tick_format="%H",
    )
    assert chart.empty and chart.bars == ()


def test_channels_past_the_pace_stand_out() -> None:
    chart = charts.against_limit("joins", [("durov", 3), ("telegram", 12)], 10)
    within, over = chart.bars
    assert (within.kind, over.kind) == ("within", "over")
    assert over.width > within.width
    assert chart.limit is not None
    x = chart.limit[0]
    assert within.x + within.width < x < over.x + over.width  # the pace line between them
    assert over.title == "telegram: 12 of 10"

"""The console's charts, drawn on the server as SVG: geometry here, markup in
``templates/_chart.html``, colours in the stylesheet (by class, as the page's badges). No
script draws them and nothing is loaded for them, so the pages keep their strict CSP.

- ``hourly``: a bar per hour, stacked by status or outcome (the runs per hour over a day
  or a week, the actions per hour by outcome);
- ``against_limit``: a bar per channel with the pace it may not pass marked across them;
- ``overview_figures``: the overview page's figures of the last day and its three hourly
  charts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from heatup_daemon.db.activity import hour_of
from heatup_daemon.enums import Outcome, RunStatus
from heatup_daemon.views import Activity

WIDTH: Final = 720
HEIGHT: Final = 180
# The plot's margins: the axis labels sit in them.
LEFT: Final = 48
BOTTOM: Final = 22
TOP: Final = 8
ROW: Final = 18  # a bar's band in ``against_limit``

# The order a chart stacks a run's statuses in, from its base: the good ones first.
RUN_ORDER: Final = (
    RunStatus.SUCCEEDED,
    RunStatus.PARTIAL,
    RunStatus.SKIPPED,
    RunStatus.FAILED,
    RunStatus.INTERRUPTED,
    RunStatus.RUNNING,
)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # the class that colours it: status-succeeded, outcome-ok, over, ...
    title: str  # shown on hover, read by screen readers


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    """What the template draws: bars, axis labels, and an optional limit line."""

    label: str  # the chart's accessible name
    width: int
    height: int
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    limit: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    legend: tuple[tuple[str, str], ...] = ()  # (class, name)
    empty: bool = False


def nice_ceiling(value: int) -> int:
    """The axis's top: 1, 2 or 5 times a power of ten, at least ``value`` (and 1)."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def hourly(
    label: str,
    hours: Sequence[datetime],
    counts: Mapping[datetime, Mapping[str, int]],
    *,
    order: Sequence[str],
    prefix: str,
    tick_every: int,
    tick_format: str,
) -> Chart:
    """A bar for each of ``hours``, stacked in ``order`` (classes ``prefix-NAME``); an hour
    missing from ``counts`` (not counted yet) has no bar. The hours of the day divisible by
    ``tick_every`` are labelled (24: each midnight)."""
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    top = nice_ceiling(max((sum(counts.get(h, {}).values()) for h in hours), default=0))
    slot = plot_w / max(1, len(hours))
    gap = 1.0 if slot > 4 else 0.0
    bars: list[Bar] = []
    for index, hour in enumerate(hours):
        base = float(HEIGHT - BOTTOM)
        for name in order:
            count = counts.get(hour, {}).get(name, 0)
            if count <= 0:
                continue
            height = plot_h * count / top
            base -= height
            x = LEFT + index * slot
            when = f"{hour:%a %d %b %H}:00Z"
            bars.append(
                Bar(x, base, slot - gap, height, f"{prefix}-{name}", f"{when}: {count} {name}")
            )
    x_ticks = tuple(
        Tick(LEFT + index * slot, HEIGHT - 6, f"{hour:{tick_format}}")
        for index, hour in enumerate(hours)
        if hour.hour % tick_every == 0
    )
    y_ticks = tuple(
        Tick(LEFT - 6, HEIGHT - BOTTOM - plot_h * share, f"{round(top * share):,}")
        for share in (0.0, 0.5, 1.0)
    )
    legend = tuple((f"{prefix}-{name}", name) for name in order)
    empty = not any(counts.get(hour) for hour in hours)
    return Chart(label, WIDTH, HEIGHT, tuple(bars), x_ticks, y_ticks, None, legend, empty)


def last_hours(now_hour: datetime, count: int) -> list[datetime]:
    """The ``count`` hours up to and including ``now_hour``, oldest first."""
    return [now_hour - timedelta(hours=count - 1 - index) for index in range(count)]


def against_limit(label: str, values: Sequence[tuple[str, int]], limit: int) -> Chart:
    """A horizontal bar for each (name, value), and the ``limit`` marked across them; a
    bar past it is drawn as ``over``."""
    names_w = 160
    plot_w = WIDTH - names_w - 80  # room on the right for the pace's label
    height = TOP + ROW * max(1, len(values)) + BOTTOM
    top = max(limit, max((value for _, value in values), default=0), 1)
    bars = tuple(
        Bar(
            names_w,
            TOP + index * ROW + 2,
            plot_w * value / top,
            ROW - 4,
            "over" if value > limit else "within",
            f"{name}: {value} of {limit}",
        )
        for index, (name, value) in enumerate(values)
    )
    names = tuple(
        Tick(names_w - 6, TOP + index * ROW + ROW - 5, name)
        for index, (name, _) in enumerate(values)
    )
    at = names_w + plot_w * limit / top
    scale = (Tick(names_w, height - 6, "0"), Tick(at, height - 6, f"{limit} an hour"))
    return Chart(
        label,
        WIDTH,
        height,
        bars,
        scale,
        names,
        (at, TOP, at, height - BOTTOM),
        (("within", "within the pace"), ("over", "past it")),
        not values,
    )


def overview_figures(history: Activity, now: datetime) -> dict[str, Any]:
    """The last day's figures and the charts of the overview page, by the hour."""
    day, week = last_hours(hour_of(now), 24), last_hours(hour_of(now), 7 * 24)
    runs_day: Counter[str] = Counter()
    for hour in day:
        runs_day.update(history.runs.get(hour, {}))
    statuses = [status.value for status in RUN_ORDER]
    outcomes = [outcome.value for outcome in Outcome]
    return {
        "runs_day": {status: count for status, count in runs_day.items() if count},
        "failures": sum(runs_day[s] for s in (RunStatus.FAILED, RunStatus.INTERRUPTED)),
        "counted_at": history.counted_at,
        "day_from": day[0],
        "charts": (
            hourly(
                "Runs per hour, last 24 hours, by status",
                day,
                history.runs,
                order=statuses,
                prefix="status",
                tick_every=3,
                tick_format="%H:00",
            ),
            hourly(
                "Runs per hour, last 7 days, by status",
                week,
                history.runs,
                order=statuses,
                prefix="status",
                tick_every=24,
                tick_format="%a %d",
            ),
            hourly(
                "Actions per hour, last 24 hours, by outcome",
                day,
                history.actions,
                order=outcomes,
                prefix="outcome",
                tick_every=3,
                tick_format="%H:00",
            ),
        ),
    }

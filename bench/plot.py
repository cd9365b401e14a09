"""The benchmarks' curves, drawn from their JSON:

- ``docs/production_day.png`` from ``bench/results/production_day.json``
  (``bench.production_day``): dispatch lag p50/p99, heatup's CPU and RSS against the pool
  size, on each database;
- ``docs/scale.png`` from ``bench/results/scale.json`` (``bench.scale``), on log-log axes:
  start-up and restart times, RSS, and CPU per action against the number of sessions.

Run from a checkout (``pip install -e '.[bench]'`` first): ``.venv/bin/python -m bench.plot``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib import pyplot as plt

from bench.common import RESULTS, ROOT

OUTPUT = ROOT / "docs" / "scale.png"
DAY_OUTPUT = ROOT / "docs" / "production_day.png"
DAY_PANELS = (
    ("dispatch lag, s", (("lag_p50_s", "p50"), ("lag_p99_s", "p99"))),
    ("heatup's CPU, cores", (("heatup_cores", "heatup"),)),
    ("RSS, MB", (("rss_mb", "heatup"),)),
)
PANELS = (
    (
        "seconds",
        (
            ("ready_s", "start to READY=1"),
            ("all_scheduled_s", "every session scheduled"),
            ("restart_ready_s", "restart to READY=1"),
        ),
    ),
    ("MB", (("rss_ready_mb", "RSS at ready"), ("rss_after_mb", "RSS after running"))),
    ("ms of CPU", (("cpu_ms_per_action", "per action, same load"),)),
)


def production_day() -> None:
    path = RESULTS / "production_day.json"
    if not path.exists():
        print(f"no {path.relative_to(ROOT)}: run python -m bench.production_day first")
        return
    document = json.loads(path.read_text())
    points = document["figures"]["points"]
    plt.switch_backend("Agg")
    figure, axes = plt.subplots(1, len(DAY_PANELS), figsize=(14, 4.2))
    for axis, (unit, series) in zip(axes, DAY_PANELS, strict=True):
        for database in sorted({point["database"] for point in points}):
            mine = sorted(
                (p for p in points if p["database"] == database), key=lambda p: p["sessions"]
            )
            for key, label in series:
                axis.plot(
                    [p["sessions"] for p in mine],
                    [p[key] for p in mine],
                    marker="o",
                    label=f"{database}: {label}",
                )
        _finish_axis(axis, "sessions (6h each, 6 h of jitter, time scale 1)", unit)
    _save(figure, document, "a production day on one node", DAY_OUTPUT)


def main() -> None:
    production_day()
    document = json.loads((RESULTS / "scale.json").read_text())
    points = document["figures"]["sizes"]
    slopes = document["figures"]["slopes"]
    sizes = [point["sessions"] for point in points]
    plt.switch_backend("Agg")  # files only, no display
    figure, axes = plt.subplots(1, len(PANELS), figsize=(14, 4.2))
    for axis, (unit, series) in zip(axes, PANELS, strict=True):
        for key, label in series:
            slope = slopes.get(key)
            text = label if slope is None else f"{label} (slope {slope:+.2f})"
            axis.plot(sizes, [point[key] for point in points], marker="o", label=text)
        axis.set_yscale("log")
        _finish_axis(axis, "registered sessions", unit)
    title = f"heatup at scale ({document['figures']['runs_due_per_s']} runs due a second)"
    _save(figure, document, title, OUTPUT)


def _finish_axis(axis: Any, xlabel: str, unit: str) -> None:
    axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(unit)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)


def _save(figure: Any, document: dict[str, Any], title: str, output: Path) -> None:
    machine = document["machine"]
    figure.suptitle(
        f"{title} - {machine['cores']} cores, {machine['cpu']}, commit {document['commit']}",
        fontsize=10,
    )
    figure.tight_layout()
    output.parent.mkdir(exist_ok=True)
    figure.savefig(output, dpi=110)
    print(f"written {output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""The scale curve: ``bench/results/scale.json`` (from ``bench.scale``) drawn on log-log axes
as ``docs/scale.png``: start-up and restart times, RSS, and CPU per action against the
number of registered sessions.

Run from a checkout (``pip install -e '.[bench]'`` first): ``.venv/bin/python -m bench.plot``.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib import pyplot as plt

from bench.common import RESULTS, ROOT

OUTPUT = ROOT / "docs" / "scale.png"
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


def main() -> None:
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
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("registered sessions")
        axis.set_ylabel(unit)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    machine = document["machine"]
    figure.suptitle(
        f"heatup at scale ({document['figures']['runs_due_per_s']} runs due a second) - "
        f"{machine['cores']} cores, {machine['cpu']}, commit {document['commit']}",
        fontsize=10,
    )
    figure.tight_layout()
    OUTPUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUTPUT, dpi=110)
    print(f"written {Path(OUTPUT).relative_to(ROOT)}")


if __name__ == "__main__":
    main()

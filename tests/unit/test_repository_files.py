"""The repository's own promises: CI runs the README's test command, the README's demo
command is the one that works, and the Makefile-free quick start has exactly two commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands[0].endswith("heatup demo")
    assert commands[1] == "tests/run"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert quick_start_commands()[1] in ci.splitlines()


def test_every_package_folder_is_packaged() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "heatup_daemon").rglob("__init__.py")
    }
    found |= {
        "heatup_daemon." + ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "migrations").rglob("__init__.py")
    }
    assert found == listed


def test_the_layout_table_names_every_module() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[0] for line in layout.splitlines() if line.startswith("| `")]
    package = REPO / "heatup_daemon"
    unnamed = []
    for module in sorted(package.rglob("*.py")):
        relative = module.relative_to(package)
        if module.name == "__init__.py" or relative.parts[0] in {"migrations", "testing"}:
            continue
        folder = "heatup_daemon/" + "".join(part + "/" for part in relative.parts[:-1])
        in_its_folder = [
            row
            for row in rows
            if (
                row.startswith("| `" + folder)
                and "/" not in row[len("| `" + folder) :].split("`")[0]
            )
            or row.startswith("| `" + folder + ":")
        ]
        if not any(
            f"`{module.name}`" in row or f"{folder}{module.name}`" in row for row in in_its_folder
        ):
            unnamed.append(str(relative))
    assert unnamed == []

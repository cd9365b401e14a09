"""The test command installs every external program the tests call (issue: a fresh machine
passes the README's test command by itself)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUBPROCESS_CALLS = frozenset({"run", "Popen", "check_call", "check_output", "call"})


def installed_tools() -> set[str]:
    """The executables of the TOOLS table in ``tests/run``."""
    script = (REPO / "tests" / "run").read_text(encoding="utf-8")
    table = re.search(r'^TOOLS="\n(.*?)^"', script, re.MULTILINE | re.DOTALL)
    assert table is not None, "tests/run has no TOOLS table"
    return {line.split()[0] for line in table.group(1).splitlines() if line.strip()}


def called_programs(source: str) -> set[str]:
    """Programs a test module names: ``tool("x")``, ``shutil.which("x")``, and a literal
    first element of a ``subprocess`` call's argument list."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first, function = node.args[0], node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if name in ("tool", "which") and isinstance(first, ast.Constant):
            found.add(str(first.value))
        elif name in SUBPROCESS_CALLS and isinstance(first, ast.List) and first.elts:
            program = first.elts[0]
            if isinstance(program, ast.Constant) and isinstance(program.value, str):
                found.add(program.value)
    return found


def test_the_scanner_sees_each_way_a_program_is_called() -> None:
    source = (
        'tool("a")\nshutil.which("b")\nsubprocess.run(["c", "x"])\n'
        'subprocess.Popen(["d"])\nsubprocess.run([HEATUP, "x"])\n'
    )
    assert called_programs(source) == {"a", "b", "c", "d"}


def test_tests_run_installs_every_program_the_tests_call() -> None:
    sources = [*REPO.glob("tests/**/*.py"), *REPO.glob("heatup_daemon/testing/*.py")]
    called: dict[str, list[str]] = {}
    for path in sources:
        for program in called_programs(path.read_text(encoding="utf-8")):
            called.setdefault(program, []).append(str(path.relative_to(REPO)))
    tools = installed_tools()
    missing = {program: where for program, where in called.items() if program not in tools}
    assert not missing, f"add these to the TOOLS table of tests/run: {missing}"
    assert {"sqlite3", "psql", "promtool", "prometheus", "systemd-analyze"} <= set(called)

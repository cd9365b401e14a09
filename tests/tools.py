"""External programs the tests drive. ``tests/run`` installs each one (its TOOLS table);
``tests/unit/test_tools.py`` checks that every program a test calls is in that table."""

from __future__ import annotations

import glob
import shutil


def tool(name: str) -> str:
    """The path of the external program ``name``; fails the test if it is missing.

    PostgreSQL's server programs (``initdb``, ``pg_ctl``) are looked up in Debian's
    ``/usr/lib/postgresql/*/bin`` as well, where they live off the ``PATH``.
    """
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default=None)
    assert found is not None, f"{name} is missing: tests/run installs it (see its TOOLS table)"
    return found


def faketime(spec: str) -> dict[str, str]:
    """The environment that runs a program on libfaketime's clock ``spec`` (``+5m``, or
    ``@2024-11-03 04:55:00 x120`` to start there and run 120 times as fast), the library
    preloaded into the program itself: the ``faketime`` wrapper forks, and a signal sent to
    it never reaches the program."""
    tool("faketime")  # Debian's faketime brings the library along
    libraries = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")  # heatup has threads
    assert libraries, "libfaketime is missing: tests/run installs faketime"
    return {"LD_PRELOAD": libraries[0], "FAKETIME": spec}

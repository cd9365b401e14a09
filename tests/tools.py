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

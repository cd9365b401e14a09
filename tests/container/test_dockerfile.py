"""The Dockerfile passes hadolint with no finding (its rules: pinned bases, no root user,
no cache left behind, exec-form commands)."""

from __future__ import annotations

import subprocess

from tests.container.docker import ROOT, venv_program


def test_the_dockerfile_has_no_lint() -> None:
    done = subprocess.run(
        [
            venv_program("hadolint"),
            "--failure-threshold",
            "info",
            str(ROOT / "deploy" / "Dockerfile"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

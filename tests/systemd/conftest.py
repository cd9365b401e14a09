"""One machine for the whole run: a Debian root made from nothing, heatup built from the
checkout and installed as the README says, the unit exactly as it ships (a drop-in sets only
the gateway's URL, the time scale and the API's port), a sandbox gateway on the host that
requires the token the unit's credential holds."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final
from uuid import uuid4

import pytest

from heatup_daemon.testing import free_port
from tests.sandboxes import SandboxControl, running_sandbox
from tests.systemd.machine import REPO, Machine, booted, is_root, make_root, source_copy, wheels

ARTIFACTS: Final = REPO / "tests" / "artifacts"
TOKEN: Final = f"gateway-token-{uuid4().hex}"
# Runs of a few seconds to a quarter of a minute: long enough to be in flight when the
# process is stopped or killed, short enough for a test.
TIME_SCALE: Final = "0.1"
Report = Callable[[dict[str, Any]], None]
FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxControl]:
    with running_sandbox(tmp_path_factory, TOKEN) as control:
        yield control


@pytest.fixture(scope="session")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """heatup's wheel built from the checkout, its dependencies' wheels beside it."""
    folder = tmp_path_factory.mktemp("build")
    return wheels(source_copy(folder / "source"), folder / "wheels")


@pytest.fixture(scope="session")
def machine(
    tmp_path_factory: pytest.TempPathFactory, build: Path, gateway: SandboxControl, api_port: int
) -> Iterator[Machine]:
    assert is_root(), "tests/systemd boot a machine with systemd-nspawn: run them as root"
    folder = tmp_path_factory.mktemp("systemd")
    started = time.monotonic()
    root = make_root(folder)
    configure(root, gateway.url, api_port)
    try:
        with booted(root, folder / "nspawn.log") as machine:
            machine.install(build)
            machine.systemctl("daemon-reload")
            print(
                f"\nmachine made, booted and heatup installed in {time.monotonic() - started:.0f} s"
            )
            yield machine
    finally:
        shutil.rmtree(root, ignore_errors=True)


def configure(root: Path, gateway_url: str, api_port: int) -> None:
    """The README's installation: the configuration, the credential, the unit as shipped;
    and the test's drop-in."""
    etc = root / "etc" / "heatup"
    etc.mkdir(mode=0o755)
    shutil.copy2(REPO / "config.toml", etc / "config.toml")
    credentials = etc / "credentials"
    credentials.mkdir(mode=0o700)
    token = credentials / "gateway.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    units = root / "etc" / "systemd" / "system"
    shutil.copy2(REPO / "heatup.service", units / "heatup.service")
    (units / "heatup.service.d").mkdir()
    (units / "heatup.service.d" / "test.conf").write_text(
        "[Service]\n"
        f"Environment=HEATUP_GATEWAY__BASE_URL={gateway_url}\n"
        f"Environment=HEATUP_EXECUTOR__TIME_SCALE={TIME_SCALE}\n"
        f"Environment=HEATUP_API__PORT={api_port}\n"
    )


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """Record a test's figures: printed at the end of the run, and written to
    ``tests/artifacts/systemd.json``."""

    def record(figures: dict[str, Any]) -> None:
        print(f"\n{request.node.name}: {json.dumps(figures, default=str)}")
        results = request.config.stash.setdefault(FIGURES, {})
        results[request.node.name] = figures
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "systemd.json").write_text(json.dumps(results, indent=2, default=str))

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(FIGURES, {})
    if not results:
        return
    terminalreporter.section("heatup.service under systemd: figures")
    for name, figures in results.items():
        terminalreporter.write_line(name)
        for key, value in figures.items():
            terminalreporter.write_line(f"    {key}: {value}")

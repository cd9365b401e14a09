"""heatup's image as an operator runs it: built from the Dockerfile on a Debian base, then
run read-only and unprivileged beside the sandbox gateway (the same image), with its
secrets as files. It becomes healthy, registers a session from its CLI, runs it through its
API, keeps its database in the state volume only, and stops on ``docker stop`` with exit
code 0, its secrets never in its output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx2
import pytest

from tests.container.docker import (
    ON_THE_IMAGES_WORKER,
    RUN,
    docker,
    inspect,
    logs,
    network,
    published,
    remove,
    wait_healthy,
)
from tests.tools import tool

pytestmark = [ON_THE_IMAGES_WORKER, pytest.mark.slow]

TOKEN = "container-api-token-for-tests"
GATEWAY_TOKEN = "container-gateway-token-for-tests"


def secrets(folder: Path) -> Path:
    """The secrets as files named by their key, as Docker mounts them in /run/secrets."""
    folder.mkdir(mode=0o755)
    for key, value in (("api.token", TOKEN), ("gateway.token", GATEWAY_TOKEN)):
        (folder / key).write_text(value)
        (folder / key).chmod(0o644)  # the daemon's user in the container reads them
    return folder


def exit_code(*args: str) -> int:
    return subprocess.run([tool("docker"), *args], capture_output=True, timeout=120).returncode


@pytest.mark.timeout(1200)
def test_the_image_runs_read_only_unprivileged_and_stops_cleanly(
    image: str, tmp_path: Path
) -> None:
    gateway, daemon, volume = f"gateway-{RUN}", f"heatup-{RUN}", f"heatup-state-{RUN}"
    with network() as net:
        try:
            docker(
                "run", "-d", "--name", gateway, "--network", net, "--network-alias", "gateway",
                "-e", f"HEATUP_GATEWAY__TOKEN={GATEWAY_TOKEN}",
                "-e", "HEATUP_API__HOST=127.0.0.1",  # the image's is the daemon's
                image, "heatup", "sandbox", "--host", "0.0.0.0",
            )  # fmt: skip
            started = time.monotonic()
            docker(
                "run", "-d", "--name", daemon, "--network", net,
                "--read-only", "--tmpfs", "/tmp",
                "-v", f"{volume}:/var/lib/heatup",
                "-v", f"{secrets(tmp_path / 'secrets')}:/run/secrets:ro",
                "-e", "HEATUP_GATEWAY__BASE_URL=http://gateway:8081",
                "-e", "HEATUP_EXECUTOR__TIME_SCALE=0",
                "-p", "127.0.0.1::8080",
                image,
            )  # fmt: skip
            healthy_s = wait_healthy(daemon)
            base = published(daemon, 8080)

            assert docker("exec", daemon, "id", "-u") == "10001"
            assert exit_code("exec", daemon, "touch", "/opt/heatup/written") != 0  # read-only
            assert exit_code("exec", daemon, "touch", "/etc/heatup/written") != 0
            docker("exec", daemon, "heatup", "sessions", "add", "--gateway-id", "7",
                   "--schedule", "6h")  # fmt: skip
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx2.Client(base_url=base, headers=headers, timeout=120) as api:
                assert api.get("/sessions").status_code == 200
                ran = api.post("/warmup-sync/7")
                assert ran.status_code == 200, ran.text
                assert ran.json()["run"]["status"] == "succeeded", ran.text
                assert httpx2.get(f"{base}/sessions", timeout=30).status_code == 401
            stored = docker("exec", daemon, "ls", "/var/lib/heatup")
            assert "heatup.db" in stored.split()

            stopping = time.monotonic()
            docker("stop", "--time", "60", daemon, timeout_s=120)
            stop_s = time.monotonic() - stopping
            state = inspect(daemon)["State"]
            output = logs(daemon)
            assert state["ExitCode"] == 0, output[-3000:]
            assert not state["OOMKilled"]
            assert stop_s < 45, f"docker stop took {stop_s:.0f} s: SIGTERM was not handled"
            for secret in (TOKEN, GATEWAY_TOKEN):
                assert secret not in output
            assert "Traceback" not in output
            print(
                f"\nhealthy {healthy_s:.1f} s after start, stopped in {stop_s:.1f} s, "
                f"{time.monotonic() - started:.0f} s in all"
            )
        finally:
            remove(daemon, gateway)
            docker("volume", "rm", "--force", volume, check=False)

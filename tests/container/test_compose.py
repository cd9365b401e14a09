"""deploy/compose.yaml as an operator starts it: heatup on PostgreSQL, scraped by Prometheus with
``deploy/``'s rules, beside the sandbox gateway and the LLM stub (a test override). Docker
Hub cannot be reached here, so PostgreSQL and Prometheus run from stand-in images built
from Debian's packages (``images/``) through the file's own image variables, and Grafana,
whose image cannot be built so, is not started: its provisioning is checked as files, and
every query of its dashboard is run against the real Prometheus scraping the real daemon.
A panel whose query returns nothing fails the test."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import yaml

from heatup_daemon.testing import free_port
from tests.container.docker import ON_THE_IMAGES_WORKER, ROOT, RUN, compose_binary

pytestmark = [ON_THE_IMAGES_WORKER, pytest.mark.slow]

TOKEN = "compose-api-token-for-tests"
GATEWAY_TOKEN = "compose-gateway-token-for-tests"
DASHBOARD = ROOT / "deploy" / "grafana" / "heatup-dashboard.json"
# The services started: all of compose.yaml's but Grafana, and the override's two.
SERVICES = ("heatup", "postgres", "prometheus", "gateway", "llm")
OVERRIDE = """
services:
  heatup:
    environment:
      HEATUP_LLM__BASE_URL: http://llm:8082/v1
      HEATUP_LLM__API_KEY: sk-compose-test-llm-key
      HEATUP_EXECUTOR__TIME_SCALE: "0"
    depends_on: [gateway, llm]
  gateway:
    image: ${HEATUP_IMAGE}
    pull_policy: never
    command: [heatup, sandbox, --host, 0.0.0.0]
    environment:
      HEATUP_GATEWAY__TOKEN: %(token)s
      HEATUP_API__HOST: 127.0.0.1
    healthcheck:
      test: [CMD, python3, -c, "%(gateway_probe)s"]
      interval: 2s
  llm:
    image: ${HEATUP_IMAGE}
    pull_policy: never
    command: [heatup, llm-stub, --host, 0.0.0.0]
    environment:
      HEATUP_API__HOST: 127.0.0.1
    healthcheck:
      test: [CMD, python3, -c, "%(llm_probe)s"]
      interval: 2s
"""
# The image's health check is the daemon's: the sandbox and the stub answer on their ports.
PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:{}/healthz', timeout=2)"


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    heatup: str
    prometheus: str

    def __call__(self, *args: str, timeout_s: float = 600) -> str:
        done = subprocess.run(
            [*self.compose, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, f"docker compose {' '.join(args)}:\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def stack(
    stand_ins: Callable[[], tuple[str, str]], image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("compose")
    secrets = folder / "secrets"
    secrets.mkdir(mode=0o755)
    for key, value in (("api.token", TOKEN), ("gateway.token", GATEWAY_TOKEN)):
        (secrets / key).write_text(value)
        (secrets / key).chmod(0o644)
    override = OVERRIDE % {
        "token": GATEWAY_TOKEN,
        "gateway_probe": PROBE.format(8081),
        "llm_probe": PROBE.format(8082),
    }
    (folder / "override.yaml").write_text(override)
    started = time.monotonic()
    postgres, prometheus = stand_ins()
    heatup_port, prometheus_port = free_port(), free_port()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(folder),
        "HEATUP_IMAGE": image,
        "HEATUP_POSTGRES_IMAGE": postgres,
        "HEATUP_PROMETHEUS_IMAGE": prometheus,
        "HEATUP_PULL_POLICY": "never",
        "HEATUP_GATEWAY_URL": "http://gateway:8081",
        "HEATUP_SECRETS": str(secrets),
        "HEATUP_PORT": str(heatup_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "GRAFANA_PORT": str(free_port()),
    }
    compose = [
        compose_binary(),
        "--project-name", f"heatup-test-{RUN}",
        "--file", str(ROOT / "deploy" / "compose.yaml"),
        "--file", str(folder / "override.yaml"),
    ]  # fmt: skip
    made = Stack(
        compose, env, f"http://127.0.0.1:{heatup_port}", f"http://127.0.0.1:{prometheus_port}"
    )
    try:
        made("up", "--detach", "--wait", "--no-build", *SERVICES)
        print(f"\nstand-ins ready and the stack up in {time.monotonic() - started:.0f} s")
        yield made
    finally:
        made("down", "--volumes", "--timeout", "60")


def query(stack: Stack, expression: str) -> list[dict[str, Any]]:
    answer = httpx2.get(
        f"{stack.prometheus}/api/v1/query", params={"query": expression}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.mark.timeout(1500)
def test_compose_runs_heatup_on_postgresql_scraped_by_prometheus(stack: Stack) -> None:
    for gateway_id in (1, 2, 3):
        stack("exec", "-T", "heatup", "heatup", "sessions", "add", "--gateway-id",
              str(gateway_id), "--schedule", "6h", "--account-created", "2020-01-01")  # fmt: skip
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx2.Client(base_url=stack.heatup, headers=headers, timeout=120) as api:
        for gateway_id in (1, 2, 3):
            ran = api.post(f"/warmup-sync/{gateway_id}")
            assert ran.status_code == 200, ran.text
            run = ran.json()["run"]
            assert run["status"] == "succeeded", ran.text
            assert run["plan_source"] == "llm", run["plan"]  # the LLM stub planned it
    database = stack("exec", "-T", "heatup", "heatup", "check-config")
    assert "postgresql+asyncpg://heatup:***@postgres:5432/heatup" in database
    # Prometheus scrapes heatup and has loaded deploy/'s alerting rules.
    deadline = time.monotonic() + 120
    while not query(stack, 'up{job="heatup"} == 1') and time.monotonic() < deadline:
        time.sleep(2)
    assert query(stack, 'up{job="heatup"} == 1'), "Prometheus does not scrape heatup"
    rules = httpx2.get(f"{stack.prometheus}/api/v1/rules", timeout=30).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "heatup-alerts.yml").read_text())
    shipped = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}
    assert loaded == shipped


@pytest.mark.timeout(600)
def test_every_dashboard_panel_has_data(stack: Stack) -> None:
    """After the runs of the test above, within two scrapes, every panel's query returns
    a series (the rates need two samples)."""
    queries = panel_queries()
    assert len(queries) >= 10
    deadline = time.monotonic() + 180
    empty = [title for title, expression in queries if not query(stack, expression)]
    while empty and time.monotonic() < deadline:
        time.sleep(5)
        empty = [title for title, expression in queries if not query(stack, expression)]
    assert empty == [], f"panels whose query returns nothing: {empty}"


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    """Grafana's image cannot be reached here: its provisioning is read as Grafana reads
    it, and it names what compose.yaml mounts and runs."""
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    mounts = services["grafana"]["volumes"]
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    (source,) = yaml.safe_load((provisioning / "datasources" / "heatup.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "prometheus" in services
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "heatup.yml").read_text())[
        "providers"
    ]
    folder = provider["options"]["path"]
    assert any(mount.startswith("./grafana/heatup-dashboard.json:" + folder) for mount in mounts)
    dashboard = json.loads(DASHBOARD.read_text())
    assert {panel["datasource"]["type"] for panel in dashboard["panels"]} == {"prometheus"}

"""The daemon's HTTP API and metrics, against a running ``heatup run``: every route and error
code, auth off loopback, promtool, a real Prometheus scraping it, schemathesis on its own
OpenAPI document."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from heatup_daemon.testing import free_port, sandbox_process, wait_until_healthy
from tests.acceptance.conftest import HEATUP, REPO
from tests.acceptance.daemons import Daemon, register, wait_until
from tests.seed import assert_seed_shape
from tests.tools import tool

# One pytest-xdist worker runs this module: its tests share one daemon, whose state they build on.
pytestmark = pytest.mark.xdist_group("api")

TOKEN = "api-token-for-tests"


def start_daemon(folder: Path, gateway: str, **env: str) -> Daemon:
    """A daemon on a new SQLite database that holds sessions 5, 6 and 7, once it is healthy
    (dispatching as often as the acceptance tests do; ``env`` adds to its environment)."""
    daemon = Daemon(f"sqlite:///{folder / 'api.db'}", gateway, folder, **env)
    upgrade = [str(HEATUP), "db", "upgrade"]
    subprocess.run(upgrade, env=daemon.env, check=True, capture_output=True)
    for gateway_id in (5, 6, 7):
        register(daemon.env, gateway_id)
    daemon.start()
    assert daemon.process is not None
    wait_until_healthy(f"{daemon.url}/healthz", daemon.process)
    return daemon


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with sandbox_process() as url:
        yield url


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, gateway: str) -> Iterator[Daemon]:
    running = start_daemon(tmp_path_factory.mktemp("api"), gateway)
    yield running
    assert running.stop()[0] == 0


@pytest.fixture
def api(daemon: Daemon) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=daemon.url, timeout=30) as client:
        yield client


def test_health_and_info(api: httpx2.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "dispatcher": "ok",
        "gateway_auth": "ok",
        "clock": "ok",
    }
    assert api.get("/health").json()["status"] == "healthy"
    info = api.get("/").json()
    assert info["service"] == "heatup" and "/warmup/{id}" in info["endpoints"]
    listed = api.get("/sessions").json()
    assert {s["gateway_session_id"] for s in listed} == {5, 6, 7}
    console = api.get("/ui")  # on loopback with no token, the console is open
    assert console.status_code == 200 and console.headers["content-type"].startswith("text/html")
    assert "/ui/sessions/5" in console.text


def test_probes_and_runs_log_no_third_party_chatter(api: httpx2.Client, daemon: Daemon) -> None:
    for _ in range(5):
        assert api.get("/readyz").status_code == 200
        assert api.get("/health").status_code == 200
    assert post_until_accepted(api, "/warmup-sync/7").status_code == 200
    lines = [json.loads(line) for line in daemon.output().splitlines() if line[:1] == "{"]
    chatter = [line for line in lines if not line["logger"].startswith("heatup_daemon")]
    assert chatter == []  # alembic, APScheduler, uvicorn, HTTP clients: WARNING and up only
    assert any(line["message"].startswith("run ") for line in lines)


def test_warmup_answers_with_the_plan_then_refuses_a_second(api: httpx2.Client) -> None:
    accepted = api.post("/warmup/5")
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["status"] == "started" and body["session_id"] == "5"  # the seed's words
    assert body["run"]["plan_source"] == "fallback" and body["execution_summary"] is None
    assert 3 <= len(body["action_plan"]) <= 7
    assert {"action", "channel_username", "duration_seconds", "reason"} == set(
        body["action_plan"][0]
    )
    plan = body["run"]["plan"]["actions"]
    assert [a["action"] for a in plan] == [a["action"] for a in body["action_plan"]]
    second = api.post("/warmup/5")
    if second.status_code != 202:  # the first may have ended already (time scale 0)
        assert second.status_code == 409 and "in flight" in second.json()["detail"]
    run = api.get(f"/runs/{body['run']['id']}")
    assert run.status_code == 200 and run.json()["trigger"] == "api"


def test_warmup_sync_answers_with_the_whole_run(api: httpx2.Client) -> None:
    done = api.post("/warmup-sync/6")
    assert done.status_code == 200
    assert done.json()["status"] == "completed"
    summary = done.json()["execution_summary"]
    run = done.json()["run"]
    assert summary["total_actions"] == len(run["actions"])
    assert run["status"] in ("succeeded", "partial") and run["finished_at"] is not None
    assert len(run["actions"]) == len(run["plan"]["actions"])
    runs = api.get("/sessions/6/runs").json()
    assert run["id"] in [r["id"] for r in runs]


def post_until_accepted(api: httpx2.Client, path: str) -> httpx2.Response:
    """POST, waiting out a run of the same session that another test left in flight."""
    return wait_until(lambda: (r := api.post(path)).status_code != 409 and r, timeout_s=20)


@pytest.mark.parametrize(
    ("recorded", "method", "path"),
    [
        ("root.json", "GET", "/"),
        ("health.json", "GET", "/health"),
        ("warmup.json", "POST", "/warmup/5"),
        ("warmup-sync.json", "POST", "/warmup-sync/6"),
    ],
)
def test_a_seed_client_reads_the_same_shape(
    api: httpx2.Client, recorded: str, method: str, path: str
) -> None:
    """Every field path of the original service's answer exists in heatup's, with a type the
    original gave it there; heatup's own record is under one added key, ``run``."""
    if method == "POST":
        answer = post_until_accepted(api, path)
    else:
        answer = api.get(path)
    assert answer.status_code in (200, 202), answer.text
    assert_seed_shape(recorded, answer.json())
    body = answer.json()
    if method == "POST":  # the seed's meanings: the gateway id as given, @channels, its words
        assert body["session_id"] == path.rsplit("/", 1)[1]
        assert body["status"] == ("started" if "sync" not in path else "completed")
        handles = [a["channel_username"] for a in body["action_plan"] if a["channel_username"]]
        assert handles and all(h.startswith("@") for h in handles)
        run_channels = [a["channel"] for a in body["run"]["plan"]["actions"] if a["channel"]]
        assert run_channels == handles  # one spelling in the whole answer
        if body["execution_summary"] is not None:
            summary = body["execution_summary"]
            assert summary["session_id"] == body["session_id"]
            assert summary["total_actions"] == len(body["run"]["actions"])
            assert all(c.startswith("@") for c in summary["joined_channels"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/warmup/404404", 404),
        ("POST", "/warmup-sync/404404", 404),
        ("GET", "/sessions/404404/runs", 404),
        ("GET", "/runs/999999", 404),
        ("POST", "/warmup/abc", 422),
        ("POST", "/warmup/0", 422),
        ("GET", "/runs/-1", 422),
        ("POST", f"/warmup/{2**63}", 422),
        ("GET", "/sessions/5/runs?limit=0", 422),
        ("DELETE", "/sessions", 405),
    ],
)
def test_error_codes(api: httpx2.Client, method: str, path: str, status: int) -> None:
    response = api.request(method, path)
    assert response.status_code == status, response.text
    assert "detail" in response.json()


def test_a_session_cooling_down_is_refused(api: httpx2.Client, daemon: Daemon) -> None:
    database = str(daemon.log.parent / "api.db")
    subprocess.run(
        [
            "sqlite3",
            "-cmd",
            ".timeout 10000",
            database,
            "UPDATE sessions SET cooldown_until = "
            "'2099-01-01 00:00:00.000000' WHERE gateway_session_id = 7",
        ],
        check=True,
    )
    refused = api.post("/warmup/7")
    assert refused.status_code == 409 and "cooling down" in refused.json()["detail"]


def scrape(api: httpx2.Client) -> str:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_are_clean_under_promtool(api: httpx2.Client) -> None:
    api.post("/warmup-sync/5")
    text = scrape(api)
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0 and checked.stdout.strip() == "", checked.stdout
    for name in (
        "heatup_runs_total",
        "heatup_actions_total",
        "heatup_run_duration_seconds",
        "heatup_action_duration_seconds",
        "heatup_gateway_requests_total",
        "heatup_gateway_request_duration_seconds",
        "heatup_plans_total",
        "heatup_llm_tokens_total",
        "heatup_dispatch_lag_seconds",
        "heatup_runs_in_flight",
        "heatup_sessions",
        "heatup_invalid_rows",
        "heatup_flood_wait_seconds_total",
        "heatup_ready",
        "heatup_build_info",
        "heatup_gateway_auth_failing",
    ):
        assert re.search(rf"^{name}(_bucket|_sum|_count)?[{{ ]", text, re.M), name
    labels = set(re.findall(r"[{,](\w+)=", text))
    assert not labels & {"session", "session_id", "gateway_session_id", "channel", "run"}
    assert re.search(r'^heatup_sessions\{standing="active"\} 3\.0$', text, re.M)


def test_dashboard_and_rules_name_real_metrics(api: httpx2.Client) -> None:
    exposed = set(re.findall(r"^(heatup_\w+?)(?:_bucket|_sum|_count)?[{ ]", scrape(api), re.M))
    dashboard = json.loads((REPO / "deploy/grafana/heatup-dashboard.json").read_text())
    rules = (REPO / "deploy/prometheus/heatup-alerts.yml").read_text()
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]] + [rules]
    used = {re.sub(r"_bucket$", "", m) for q in queries for m in re.findall(r"heatup_\w+", q)}
    assert used and used <= exposed, used - exposed


def test_alert_rules_pass_their_promtool_tests() -> None:
    folder = REPO / "deploy/prometheus"
    for args in (
        ["check", "rules", "heatup-alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "heatup-alerts.test.yml"],
    ):
        done = subprocess.run([tool("promtool"), *args], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_real_prometheus_scrapes_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    target = daemon.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: heatup\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(f"{base}/-/ready", process, timeout_s=60)

        def query(expression: str) -> list[dict[str, object]]:
            body = httpx2.get(f"{base}/api/v1/query", params={"query": expression}).json()
            return list(body["data"]["result"])

        deadline = time.monotonic() + 30
        while not query('up{job="heatup"} == 1') and time.monotonic() < deadline:
            time.sleep(0.5)
        assert query('up{job="heatup"} == 1'), "Prometheus never scraped the daemon"
        assert query("heatup_build_info") and query("heatup_sessions")
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_schemathesis_finds_no_server_error(daemon: Daemon) -> None:
    done = subprocess.run(
        [
            str(HEATUP.with_name("schemathesis")),
            "run",
            f"{daemon.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_off_loopback_every_route_but_health_and_metrics_needs_the_token(
    tmp_path: Path, gateway: str
) -> None:
    daemon = start_daemon(tmp_path, gateway, HEATUP_API__HOST="0.0.0.0", HEATUP_API__TOKEN=TOKEN)
    try:
        with httpx2.Client(base_url=daemon.url) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/metrics").status_code == 200
            paths = ("/", "/readyz", "/health", "/sessions", "/runs/1", "/openapi.json", "/docs")
            for path in paths:
                assert client.get(path).status_code == 401, path
                for header in ("Bearer nope", "Bearer", "Basic abc", TOKEN, f"Bearer {TOKEN}x"):
                    wrong = client.get(path, headers={"Authorization": header})
                    assert wrong.status_code == 401, (path, header)
                assert wrong.headers["www-authenticate"] == "Bearer"
            authorized = {"Authorization": f"Bearer {TOKEN}"}
            assert client.get("/sessions", headers=authorized).status_code == 200
            assert client.get("/openapi.json", headers=authorized).json()["info"]["title"]
            assert client.post("/warmup/5").status_code == 401
    finally:
        assert daemon.stop()[0] == 0
    assert TOKEN not in daemon.output()


def test_off_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(HEATUP), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HEATUP_API__HOST": "0.0.0.0"},
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "api.token is required" in done.stderr and len(done.stderr.splitlines()) == 1


def test_auto_register_takes_an_unknown_session(tmp_path: Path, gateway: str) -> None:
    daemon = start_daemon(tmp_path, gateway, HEATUP_API__AUTO_REGISTER="true")
    try:
        with httpx2.Client(base_url=daemon.url, timeout=30) as client:
            accepted = client.post("/warmup/42")
            assert accepted.status_code == 202, accepted.text
            registered = {s["gateway_session_id"]: s for s in client.get("/sessions").json()}
            assert registered[42]["label"] == "registered by the API"
            assert registered[42]["schedule"] == "1d" and registered[42]["enabled"] is True
            assert client.post("/warmup/0").status_code == 422  # still only valid ids
    finally:
        assert daemon.stop()[0] == 0


def test_oversized_requests_are_refused_before_any_route(
    api: httpx2.Client, daemon: Daemon
) -> None:
    def rss_kb() -> int:
        status = Path(f"/proc/{daemon.process.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )

    before = rss_kb()
    huge = "x" * (2 * 1024 * 1024)
    for _ in range(8):
        response = api.get("/sessions", headers={"X-Filler": huge})
        assert response.status_code == 431
    assert api.get("/sessions?" + "a=1&" * 10_000).status_code == 431  # a long request line
    many = {f"X-H{i}": "1" for i in range(200)}
    assert api.get("/sessions", headers=many).status_code == 431
    body = api.post("/warmup/5", content=b"x" * (1024 * 1024))
    assert body.status_code == 413
    assert rss_kb() - before < 20_000  # the 16 MB of headers were never held
    assert api.get("/healthz").status_code == 200  # and the daemon serves on

"""Another site's page cannot use a daemon on the operator's machine: Chromium opens pages
served from other origins that try to start runs on a loopback daemon with the default
configuration (no token) and ``api.auto_register`` on, and a DNS-rebinding name that
resolves to the daemon. Each attempt is refused, and the gateway's audit shows no call."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx2
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from heatup_daemon.testing import wait_until_healthy
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import SQL, Daemon, register
from tests.sandboxes import SandboxControl, running_sandbox
from tests.tools import tool

# One pytest-xdist worker runs this module: its tests share one daemon and one browser.
pytestmark = pytest.mark.xdist_group("cross-site")

REGISTERED = 5
UNKNOWN = 6  # auto_register would register it on a /warmup
REBINDING = "rebinding.attacker.example"


@dataclass
class Target:
    url: str
    port: int
    sql: SQL
    gateway: SandboxControl

    def untouched(self) -> None:
        """No run, no new session, no gateway call."""
        assert self.sql("SELECT count(*) FROM warmup_runs") == [["0"]]
        assert self.sql("SELECT gateway_session_id FROM sessions") == [[str(REGISTERED)]]
        assert self.gateway.audit() == []


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("cross-site")
    url = f"sqlite:///{folder / 'heatup.db'}"
    with running_sandbox(tmp_path_factory) as gateway:
        daemon = Daemon(url, gateway.url, folder, HEATUP_API__AUTO_REGISTER="true")
        subprocess.run(
            [str(HEATUP), "db", "upgrade"], env=daemon.env, check=True, capture_output=True
        )
        register(daemon.env, REGISTERED, "--schedule", "0 0 1 1 *", "--jitter", "0")  # not soon
        daemon.start()
        try:
            wait_until_healthy(f"{daemon.url}/healthz", daemon.process)
            gateway.reset()
            yield Target(daemon.url, daemon.port, SQL(url), gateway)
        finally:
            code, _ = daemon.stop()
            assert code == 0, daemon.output()[-2000:]


class _Pages(BaseHTTPRequestHandler):
    """Another site: each path is a page that tries something against the daemon."""

    pages: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path, "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def attacker(target: Target) -> Iterator[str]:
    """The other site's base URL (another port of 127.0.0.1: same site, other origin)."""
    daemon = target.url
    _Pages.pages = {
        "/form": f"""<form method="post" action="{daemon}/warmup/{REGISTERED}"></form>
            <script>document.forms[0].submit()</script>""",
        "/console": f"""<form method="post" action="{daemon}/ui/sessions/{REGISTERED}/remove">
            <input name="form_token" value="guessed"></form>
            <script>document.forms[0].submit()</script>""",
        "/register": f"""<form method="post" action="{daemon}/warmup/{UNKNOWN}"
            enctype="text/plain"><input name="x" value="y"></form>
            <script>document.forms[0].submit()</script>""",
        "/fetch": f"""<p id="done"></p><script>
            Promise.allSettled([
              fetch("{daemon}/warmup/{REGISTERED}", {{method: "POST", mode: "no-cors"}}),
              fetch("{daemon}/warmup/{UNKNOWN}", {{method: "POST", mode: "no-cors"}}),
              fetch("{daemon}/warmup-sync/{REGISTERED}", {{method: "POST"}}),
              fetch("{daemon}/sessions").then(r => r.text()),
            ]).then(results => {{
              document.getElementById("done").textContent =
                results.map(r => r.status + ":" + (r.value === undefined ? "" :
                  typeof r.value === "string" ? r.value : r.value.type)).join(" ");
            }});
            </script>""",
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=tool("chromium"),
            args=[
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                f"--host-resolver-rules=MAP {REBINDING} 127.0.0.1",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def test_a_form_posted_from_another_site_starts_no_run(
    page: Page, target: Target, attacker: str
) -> None:
    with page.expect_response(f"{target.url}/warmup/{REGISTERED}") as answered:
        page.goto(f"{attacker}/form")
    assert answered.value.status == 403
    assert "may not change anything" in answered.value.text()
    with page.expect_response(f"{target.url}/warmup/{UNKNOWN}") as answered:
        page.goto(f"{attacker}/register")
    assert answered.value.status == 403
    with page.expect_response(f"{target.url}/ui/sessions/{REGISTERED}/remove") as answered:
        page.goto(f"{attacker}/console")
    assert answered.value.status == 403
    target.untouched()


def test_a_console_form_posted_without_its_token_is_refused(target: Target) -> None:
    """A client that sends no browser headers still needs the form token of a page the
    console rendered."""
    with httpx2.Client(base_url=target.url, timeout=30, follow_redirects=False) as client:
        for data in ({}, {"form_token": "0" * 64}):
            refused = client.post(f"/ui/sessions/{REGISTERED}/remove", data=data)
            assert refused.status_code == 403 and "token is missing or stale" in refused.text
    target.untouched()


def test_a_fetch_from_another_site_starts_nothing_and_reads_nothing(
    page: Page, target: Target, attacker: str
) -> None:
    page.goto(f"{attacker}/fetch")
    page.wait_for_function("document.getElementById('done').textContent !== ''")
    outcomes = page.text_content("#done")
    assert outcomes is not None
    # The no-cors posts end opaque, the others are blocked: nothing is read.
    assert outcomes.split() == ["fulfilled:opaque", "fulfilled:opaque", "rejected:", "rejected:"]
    target.untouched()


def test_a_rebinding_name_is_refused(page: Page, target: Target) -> None:
    """A name of the attacker's that now resolves to the daemon reads nothing."""
    answered = page.goto(f"http://{REBINDING}:{target.port}/sessions")
    assert answered is not None and answered.status == 400
    assert "is not served here" in answered.text()
    assert str(REGISTERED) not in answered.text()
    answered = page.goto(f"http://{REBINDING}:{target.port}/ui")
    assert answered is not None and answered.status == 400
    with httpx2.Client(base_url=target.url, timeout=30) as client:
        forged = client.post(
            f"/warmup/{REGISTERED}", headers={"Host": f"{REBINDING}:{target.port}"}
        )
        assert forged.status_code == 400
        assert client.get("/healthz", headers={"Host": REBINDING}).status_code == 200
    target.untouched()

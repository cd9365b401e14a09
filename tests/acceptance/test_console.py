"""The web console in a real browser: Playwright driving Debian's chromium through every page
of a daemon with real history, as an operator would, signed in with the API token. Each page
is saved as a screenshot under ``tests/artifacts/``."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    expect,
    sync_playwright,
)

from heatup_daemon.errors import InvalidValue
from heatup_daemon.testing import wait_until_healthy
from heatup_daemon.validation import validate_channel, validate_session
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import SQL, Daemon, register, wait_until
from tests.sandboxes import SandboxControl, running_sandbox
from tests.tools import tool

# One pytest-xdist worker runs this module: its tests share one daemon and one browser.
pytestmark = pytest.mark.xdist_group("console")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "console-token-for-tests"
READER = "console-read-token-for-tests"
HOSTILE_LABEL = "<script>alert('label')</script>"
HEALTHY = (1, 2, 3, 4)
REVOKED, FROZEN, DISABLED, COOLING, INVALID = 9001, 9100, 5, 6, 7
GREEN = "rgb(31, 122, 58)"


@dataclass
class Console:
    url: str
    sql: SQL
    gateway: SandboxControl


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{folder / 'console.db'}"
    with running_sandbox(tmp_path_factory) as gateway:
        daemon = Daemon(
            url, gateway.url, folder, HEATUP_API__TOKEN=TOKEN, HEATUP_API__READ_TOKEN=READER
        )
        subprocess.run(
            [str(HEATUP), "db", "upgrade"], env=daemon.env, check=True, capture_output=True
        )
        for gateway_id in (*HEALTHY, REVOKED, FROZEN, DISABLED, COOLING, INVALID):
            register(daemon.env, gateway_id)
        register(daemon.env, 8, "--label", HOSTILE_LABEL)
        sql = SQL(url)
        daemon.start()
        try:
            base = f"http://127.0.0.1:{daemon.port}"
            wait_until_healthy(f"{base}/healthz", daemon.process)
            make_history(base)
            sql(f"UPDATE sessions SET enabled = 0 WHERE gateway_session_id = {DISABLED}")
            sql(
                "UPDATE sessions SET cooldown_until = '2099-01-01 00:00:00.000000' "
                f"WHERE gateway_session_id = {COOLING}"
            )
            sql(f"UPDATE sessions SET schedule = 'when pigs fly' "
                f"WHERE gateway_session_id = {INVALID}")  # fmt: skip
            sql("UPDATE channels SET flagged_reason = 'CHANNEL_PRIVATE for 3 sessions' "
                "WHERE username = 'nasa'")  # fmt: skip
            wait_until(lambda: sql(
                "SELECT count(*) FROM sessions WHERE invalid_reason IS NOT NULL"
            ) == [["1"]])  # fmt: skip
            yield Console(base, sql, gateway)
        finally:
            code, _ = daemon.stop()
            assert code == 0, daemon.output()[-2000:]
            assert "Traceback" not in daemon.output()


def make_history(base: str) -> None:
    """Runs for the console to show: several for the healthy sessions, one each for the
    sessions the gateway reports revoked and frozen."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx2.Client(base_url=base, headers=headers, timeout=60) as api:
        for _ in range(3):
            for gateway_id in HEALTHY:
                assert api.post(f"/warmup-sync/{gateway_id}").status_code == 200
        for gateway_id in (REVOKED, FROZEN):
            assert api.post(f"/warmup-sync/{gateway_id}").status_code == 200


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=tool("chromium"),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A fresh browser context (no cookie) that fails the test on a script dialog, a console
    error (a Content-Security-Policy violation is one) or a request leaving the daemon."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("dialog", lambda dialog: problems.append(f"a script ran: {dialog.message}"))
    opened.on("console", lambda message: _console(message, problems))
    opened.on("request", lambda request: _request(request, console.url, problems))
    yield opened
    context.close()
    assert problems == []


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    """A console error other than a page's own status (the 401 of a refused sign-in, the
    404 of an unknown session): a script error or a Content-Security-Policy violation."""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(f"console error: {message.text}")


def _request(request: Request, base: str, problems: list[str]) -> None:
    if not request.url.startswith(base):
        problems.append(f"a request left the daemon: {request.url}")


def sign_in(page: Page, base: str, token: str = TOKEN) -> None:
    page.goto(f"{base}/ui")
    page.fill("#token", token)
    page.click("form.login button")
    page.wait_for_url(f"{base}/ui")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_signing_in_trades_the_token_for_a_strict_cookie(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/ui/channels")
    assert page.url == f"{console.url}/ui/login?next=%2Fui%2Fchannels"
    shot(page, "login")
    page.fill("#token", "not-the-token-at-all")
    with page.expect_response(f"{console.url}/ui/login") as refused:
        page.click("form.login button")
    assert refused.value.status == 401
    assert "neither the daemon's API token nor its read token" in page.inner_text("[role=alert]")
    page.fill("#token", TOKEN)
    page.click("form.login button")
    page.wait_for_url(f"{console.url}/ui/channels")  # back where the operator was going
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/ui/login"))
    page.goto(f"{console.url}/ui")
    assert "/ui/login" in page.url


def row_of(page: Page, gateway_id: int) -> Locator:
    link = page.locator(f"a[href='/ui/sessions/{gateway_id}']")
    return page.locator("table.sessions tbody tr", has=link)


def figure(page: Page, name: str) -> int:
    return int(page.inner_text(f"#{name}"))


def recounted(page: Page) -> bool:
    """Whether the page shows the fixture's edits: the session counts are the daemon's own,
    taken every 15 s (the page says when), so the first page may predate them."""
    page.reload()
    return figure(page, "sessions-disabled") == 1 and figure(page, "sessions-invalid") == 1


def test_the_sessions_at_a_glance(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    wait_until(lambda: recounted(page), timeout_s=30, interval_s=1)
    assert "Sessions counted" in page.inner_text("#sessions-counted")
    assert figure(page, "sessions-total") == 10
    assert figure(page, "sessions-attention") == 2  # revoked and frozen
    assert figure(page, "sessions-disabled") == 1
    assert figure(page, "sessions-cooling") == 1
    assert figure(page, "sessions-invalid") == 1
    runs = int(console.sql("SELECT count(*) FROM warmup_runs")[0][0])
    assert figure(page, "runs-24h") == runs >= 14
    failures = console.sql("SELECT count(*) FROM warmup_runs "
                           "WHERE status IN ('failed', 'interrupted')")  # fmt: skip
    assert figure(page, "failures-24h") == int(failures[0][0])
    # The charts hold the same runs, drawn on the server: one bar a status and hour.
    by_status = console.sql("SELECT status, count(*) FROM warmup_runs GROUP BY status")
    for name in ("last 24 hours", "last 7 days"):
        chart = page.locator(f"svg[aria-label='Runs per hour, {name}, by status']")
        assert charted(chart) == {status: int(count) for status, count in by_status}
    actions = page.locator("svg[aria-label='Actions per hour, last 24 hours, by outcome']")
    by_outcome = console.sql("SELECT outcome, count(*) FROM warmup_actions GROUP BY outcome")
    assert charted(actions) == {outcome: int(count) for outcome, count in by_outcome}
    rows = page.locator("table.sessions tbody tr")
    assert rows.count() == 10
    hostile = page.locator("table.sessions tbody tr", has_text="alert(")
    assert hostile.locator(".label").inner_text() == HOSTILE_LABEL  # shown, not run
    revoked = row_of(page, REVOKED)
    assert "needs attention" in revoked.inner_text() and "REVOKED" in revoked.inner_text()
    invalid = row_of(page, INVALID)
    assert "invalid" in invalid.inner_text() and "schedule" in invalid.inner_text()
    shot(page, "overview")


def states(page: Page) -> list[str]:
    return page.locator("table.sessions tbody tr td:nth-child(2)").all_inner_texts()


def charted(chart: Locator) -> dict[str, int]:
    """What a chart's bars say, added up by name (each bar's title: ``when: N name``)."""
    totals: dict[str, int] = {}
    for title in chart.locator("rect > title").all_text_contents():
        count, name = title.rsplit(": ", 1)[1].split(" ", 1)
        totals[name] = totals.get(name, 0) + int(count)
    return totals


def test_the_session_list_sorts_by_any_column(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    page.click("table.sessions th >> text=standing")
    page.wait_for_url(re.compile(r"sort=standing&order=asc"))
    ascending = states(page)
    assert ascending[0] == "active" and ascending[-1] == "invalid"
    page.click("table.sessions th >> text=standing")
    page.wait_for_url(re.compile(r"sort=standing&order=desc"))
    assert states(page)[0] == "invalid"
    assert page.get_attribute("th[aria-sort]", "aria-sort") == "descending"
    page.click("table.sessions th >> text=session")
    page.wait_for_url(re.compile(r"sort=id&order=asc"))
    ids = [
        int(t.split()[0])
        for t in page.locator("table.sessions tbody tr td:first-child").all_inner_texts()
    ]
    assert ids == sorted(ids)


def test_a_session_shows_its_runs_as_a_timeline(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    page.click("table.sessions a >> text=/^1$/")
    page.wait_for_url(f"{console.url}/ui/sessions/1")
    blocks = page.locator("ol.timeline a")
    assert blocks.count() == 3
    for index in range(blocks.count()):
        block = blocks.nth(index)
        status = block.inner_text().strip()
        assert f"status-{status}" in (block.get_attribute("class") or "")
        if status == "succeeded":
            colour = block.evaluate("node => getComputedStyle(node).backgroundColor")
            assert colour == GREEN
    newest = page.locator("details.run").first
    assert newest.get_attribute("open") is not None
    actions = newest.locator("table.actions tbody tr")
    assert 3 <= actions.count() <= 7
    # Every run's actions, the closed ones too: one spelling of a channel, @username.
    channels = page.locator("table.actions tbody tr td:nth-child(3)").all_text_contents()
    assert all(c == "-" or c.startswith("@") for c in channels), channels
    assert any(c.startswith("@") for c in channels)
    assert "channels joined" in page.inner_text("dl.facts")
    shot(page, "session")
    page.goto(f"{console.url}/ui/sessions/{FROZEN}")
    assert "FROZEN" in page.inner_text("dl.facts")
    # The gateway refuses every call of a frozen session: the run failed, or was partial when
    # the plan opened with an idle, which needs no call.
    ((frozen_status,),) = console.sql(
        "SELECT r.status FROM warmup_runs r JOIN sessions s ON s.id = r.session_id "
        f"WHERE s.gateway_session_id = {FROZEN}"
    )
    assert frozen_status in ("failed", "partial")
    assert page.locator(f"ol.timeline a.status-{frozen_status}").count() == 1
    missing = page.goto(f"{console.url}/ui/sessions/424242")
    assert missing is not None and missing.status == 404
    assert "no session with gateway id 424242" in page.inner_text("main")


def test_the_channel_pool_with_its_flags(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    page.click("nav >> text=Channels")
    page.wait_for_url(f"{console.url}/ui/channels")
    pool = int(console.sql("SELECT count(*) FROM channels")[0][0])
    rows = page.locator("table.channels tbody tr")
    assert rows.count() == pool
    flagged = page.locator("table.channels tbody tr.flagged")
    assert flagged.count() == 1 and "@nasa" in flagged.inner_text()
    assert "CHANNEL_PRIVATE for 3 sessions" in flagged.inner_text()
    joined = int(console.sql("SELECT count(DISTINCT channel_id) FROM session_channels")[0][0])
    members = page.locator("table.channels tbody tr td:nth-child(5)").all_inner_texts()
    assert sum(1 for m in members if int(m) > 0) == joined > 0
    # The last hour's joins of each pool channel, against the pace marked across them.
    chart = page.locator("svg[aria-label='Joins per channel in the last hour, against the pace']")
    hour = page.locator("table.channels tbody tr td:nth-child(6)").all_inner_texts()
    joins = sum(int(text.split(" / ")[0]) for text in hour)
    assert sum(charted(chart).values()) == joins > 0
    assert chart.locator("line.limit").count() == 1
    shot(page, "channels")


def test_the_cookie_starts_no_run_and_sign_in_goes_nowhere_else(console: Console) -> None:
    with httpx2.Client(base_url=console.url, timeout=30, follow_redirects=False) as client:
        signed = client.post("/ui/login", data={"token": TOKEN, "next": "//evil.example/x"})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui"
        set_cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert client.get("/ui").status_code == 200  # the cookie reads
        refused = client.post("/warmup/1")  # but starts nothing
        assert refused.status_code == 401
        page = client.get("/ui")
        assert "script-src" not in page.headers["content-security-policy"]
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "<script" not in page.text.replace("&lt;script", "")


def test_the_read_token_reads_every_page_and_changes_nothing(page: Page, console: Console) -> None:
    sign_in(page, console.url, READER)
    assert page.text_content("form.logout .access") == "read only"
    for path in ("/ui", "/ui/channels", f"/ui/sessions/{HEALTHY[0]}"):
        assert page.goto(f"{console.url}{path}").status == 200  # type: ignore[union-attr]
    runs = console.sql("SELECT count(*) FROM warmup_runs")
    with httpx2.Client(base_url=console.url, timeout=30) as client:
        refused = client.post(
            f"/warmup/{HEALTHY[0]}", headers={"Authorization": f"Bearer {READER}"}
        )
        assert refused.status_code == 403 and "read_token" in refused.json()["detail"]
        assert READER not in refused.text
        assert client.get("/sessions", headers={"Authorization": f"Bearer {READER}"}).is_success
    assert console.sql("SELECT count(*) FROM warmup_runs") == runs
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/ui/login"))


def test_a_form_is_refused_without_the_token_of_its_sign_in(console: Console) -> None:
    with httpx2.Client(base_url=console.url, timeout=30, follow_redirects=False) as client:
        client.post("/ui/login", data={"token": TOKEN})
        assert client.post("/ui/logout").status_code == 403
        assert client.post("/ui/logout", data={"form_token": "0" * 64}).status_code == 403
        page = client.get("/ui").text
        form_token = page.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        assert client.post("/ui/logout", data={"form_token": form_token}).status_code == 303


def cli_error(**values: object) -> str:
    """The CLI's words for a session row it refuses."""
    row: dict[str, object] = {"gateway_session_id": 77, "jitter_seconds": 0, "timezone": "UTC"}
    try:
        validate_session(label=None, **{**row, **values})  # type: ignore[arg-type]
    except InvalidValue as exc:
        return str(exc)
    raise AssertionError(f"{values} is valid")


def test_an_operator_registers_edits_runs_and_removes_a_session(
    page: Page, console: Console
) -> None:
    sign_in(page, console.url)
    page.click("header >> text=Register")
    page.fill("#gateway_id", "77")
    page.fill("#schedule", "when pigs fly")
    page.fill("#label", "from the console")
    page.click("form.register button")
    expect(page.locator("form.register .problem")).to_have_text(cli_error(schedule="when pigs fly"))
    assert page.input_value("#label") == "from the console"  # filled in as sent
    assert console.sql("SELECT count(*) FROM sessions WHERE gateway_session_id = 77") == [["0"]]
    page.fill("#schedule", "6h")
    page.fill("#jitter", "60")
    page.click("form.register button")
    page.wait_for_url(f"{console.url}/ui/sessions/77")
    shot(page, "register")

    page.fill("#jitter", "21600")  # not below the interval: refused with the CLI's words
    page.click("form.edit button")
    problem = cli_error(schedule="6h", jitter_seconds=21600)
    expect(page.locator("form.edit .problem")).to_have_text(problem)
    page.fill("#jitter", "120")
    page.fill("#timezone", "Europe/Berlin")
    page.click("form.edit button")
    page.wait_for_url(f"{console.url}/ui/sessions/77")
    row = "SELECT jitter_seconds, timezone, enabled FROM sessions WHERE gateway_session_id = 77"
    assert console.sql(row) == [["120", "Europe/Berlin", "1"]]
    page.click("button.disable")
    page.wait_for_url(f"{console.url}/ui/sessions/77")
    assert console.sql(row) == [["120", "Europe/Berlin", "0"]]
    page.click("button.enable")
    page.wait_for_url(f"{console.url}/ui/sessions/77")

    console.gateway.faults("latency=600ms")  # a run that lasts long enough to watch
    try:
        page.click("button.run")
        page.wait_for_url(re.compile(rf"{console.url}/ui/runs/\d+"))
        expect(page.locator("#run-status")).to_have_text("running")
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        shot(page, "run-live")
        # The action on the wire is shown in flight, not as the crash its row provides for.
        page.wait_for_selector("table.actions tbody tr")
        assert "heatup stopped" not in page.inner_text("body")
        # The page re-renders itself until the run ends: no reload from the test.
        expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
    finally:
        console.gateway.faults("")

    page.goto(f"{console.url}/ui/sessions/77")
    audit = page.locator("table.audit tbody tr").all_inner_texts()
    assert [line.split("\t")[2] for line in audit] == ["enable", "disable", "edit", "register"]
    assert all("console (api.token)" in line for line in audit)
    assert "jitter_seconds: 60 → 120" in audit[2] and "timezone: UTC → Europe/Berlin" in audit[2]
    shot(page, "session-manage")
    page.click("button.remove")
    page.wait_for_url(f"{console.url}/ui")
    assert console.sql("SELECT count(*) FROM sessions WHERE gateway_session_id = 77") == [["0"]]
    assert console.sql(
        "SELECT count(*) FROM audit_log WHERE gateway_session_id = 77 AND action = 'remove'"
    ) == [["1"]]


def test_bulk_actions_on_the_sessions_ticked(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    chosen = HEALTHY[:2]
    for action, enabled in (("disable", "0"), ("enable", "1")):
        page.goto(f"{console.url}/ui?sort=id")
        for gateway_id in chosen:
            page.check(f'input[name="id"][value="{gateway_id}"]')
        page.select_option("#bulk-action", action)
        page.click("form.bulk button")
        results = page.locator("table.bulk-results tbody tr").all_inner_texts()
        assert results == [f"{gateway_id}\t{action}d" for gateway_id in chosen]
        ids = ", ".join(str(gateway_id) for gateway_id in chosen)
        states = console.sql(f"SELECT enabled FROM sessions WHERE gateway_session_id IN ({ids})")
        assert states == [[enabled], [enabled]]
    shot(page, "bulk")


def test_the_channel_pool_is_managed_from_its_page(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    page.goto(f"{console.url}/ui/channels")
    page.fill("#username", "@x")
    page.click("form.add-channel button")
    expected = ""
    try:
        validate_channel(username="@x", title=None, category=None, description=None)
    except InvalidValue as exc:
        expected = str(exc)
    expect(page.locator("form.add-channel .problem")).to_have_text(expected)
    page.fill("#username", "@console_added")
    page.fill("#category", "news")
    page.click("form.add-channel button")
    page.wait_for_url(f"{console.url}/ui/channels")
    enabled = "SELECT enabled FROM channels WHERE username = 'console_added'"
    assert console.sql(enabled) == [["1"]]
    row = page.locator("table.channels tbody tr", has_text="@console_added")
    row.locator("button.disable").click()
    page.wait_for_url(f"{console.url}/ui/channels")
    assert console.sql(enabled) == [["0"]]
    row.locator("button.enable").click()
    page.wait_for_url(f"{console.url}/ui/channels")
    assert console.sql(enabled) == [["1"]]
    actions = console.sql(
        "SELECT action FROM audit_log WHERE channel = 'console_added' ORDER BY id"
    )
    assert actions == [["add channel"], ["disable channel"], ["enable channel"]]


def test_a_read_only_sign_in_sees_no_form_and_its_posts_are_refused(
    page: Page, console: Console
) -> None:
    sign_in(page, console.url, READER)
    for path in ("/ui", f"/ui/sessions/{HEALTHY[0]}", "/ui/channels"):
        page.goto(f"{console.url}{path}")
        assert page.locator("form.bulk, form.edit, form.add-channel, section.manage").count() == 0
        assert page.locator("header >> text=Register").count() == 0
    with httpx2.Client(base_url=console.url, timeout=30, follow_redirects=False) as client:
        client.post("/ui/login", data={"token": READER})
        html = client.get("/ui").text
        form_token = html.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        refused = client.post(f"/ui/sessions/{HEALTHY[0]}/disable", data={"form_token": form_token})
        assert refused.status_code == 403 and "only reads" in refused.text
    assert console.sql(f"SELECT enabled FROM sessions WHERE gateway_session_id = {HEALTHY[0]}") == [
        ["1"]
    ]


def test_many_sessions_are_imported_from_an_uploaded_file(
    page: Page, console: Console, tmp_path: Path
) -> None:
    sign_in(page, console.url)
    page.goto(f"{console.url}/ui")
    page.click("text=Import or export")
    upload = tmp_path / "pool.csv"
    upload.write_text("gateway_id,schedule\n501,6h\n502,when pigs fly\n503,1d\n", encoding="utf-8")
    page.set_input_files("#file", str(upload))
    page.click("form.import button")
    expect(page.locator("section.report .problem")).to_have_text(
        "1 of 3 rows of pool.csv are refused: nothing was registered."
    )
    problem = cli_error(schedule="when pigs fly")
    assert page.locator("table.problems tbody tr").all_inner_texts() == [f"3\t{problem}"]
    imported = "SELECT count(*) FROM sessions WHERE gateway_session_id BETWEEN 501 AND 503"
    assert console.sql(imported) == [["0"]]

    page.set_input_files("#file", str(upload))
    page.check('input[name="skip_invalid"]')
    page.click("form.import button")
    expect(page.locator("section.report .done")).to_have_text(
        "Registered 2 of 3 sessions from pool.csv; 1 row skipped."
    )
    assert console.sql(imported) == [["2"]]
    assert console.sql(
        "SELECT count(*) FROM audit_log WHERE gateway_session_id BETWEEN 501 AND 503 "
        "AND via = 'console' AND action = 'register'"
    ) == [["2"]]
    shot(page, "import")
    with page.expect_download() as download:
        page.click("text=Export every session as CSV")
    exported = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert exported[0].startswith("gateway_id,schedule,")
    assert any(line.startswith("501,6h,") for line in exported)
    total = int(console.sql("SELECT count(*) FROM sessions")[0][0])
    assert len(exported) == 1 + total


def test_the_session_list_is_searched_and_filtered(page: Page, console: Console) -> None:
    sign_in(page, console.url)
    page.fill("#q", str(REVOKED))
    page.click("form.search button")
    ids = page.locator("table.sessions tbody tr td:first-child a").all_inner_texts()
    assert ids == [str(REVOKED)]
    page.fill("#q", "")
    page.select_option("#standing", "disabled")
    page.click("form.search button")
    ids = page.locator("table.sessions tbody tr td:first-child a").all_inner_texts()
    disabled = console.sql("SELECT gateway_session_id FROM sessions WHERE enabled = 0 "
                           "AND invalid_reason IS NULL ORDER BY next_run_at")  # fmt: skip
    assert sorted(ids) == sorted(row[0] for row in disabled) and str(DISABLED) in ids
    shot(page, "search")


def test_the_activity_page_filters_pages_and_exports_every_run(
    page: Page, console: Console
) -> None:
    sign_in(page, console.url)
    page.click("header >> text=Activity")
    total = int(console.sql("SELECT count(*) FROM warmup_runs")[0][0])
    assert page.locator("table.runs tbody tr").count() == min(total, 100)
    page.select_option("#status", "succeeded")
    page.fill("#session", str(HEALTHY[0]))
    page.click("form.filters button")
    rows = page.locator("table.runs tbody tr").all_inner_texts()
    expected = console.sql(
        "SELECT id FROM warmup_runs WHERE status = 'succeeded' "
        f"AND gateway_session_id = {HEALTHY[0]} ORDER BY id DESC"
    )
    assert [row.split("\t")[0] for row in rows] == [row[0] for row in expected] != []
    assert all(f"\t{HEALTHY[0]}\tsucceeded\t" in row for row in rows)
    shot(page, "activity")
    with page.expect_download() as download:
        page.click("text=Export these runs as CSV")
    exported = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert exported[0].startswith("run_id,gateway_id,status,")
    assert [line.split(",")[0] for line in exported[1:]] == [row[0] for row in expected]
    refused = page.goto(f"{console.url}/ui/activity?since=yesterday")
    assert refused is not None and refused.status == 422
    assert "since 'yesterday' is not a date" in page.inner_text("main")

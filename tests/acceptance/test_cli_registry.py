"""The registry commands end to end through the installed ``heatup`` entry point."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from heatup_daemon.db.migrate import head_revision
from tests.acceptance.conftest import REPO, Heatup, Result, run_heatup
from tests.acceptance.daemons import SQL


def ok(result: Result) -> str:
    assert result.code == 0, result.stderr
    return result.stdout


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("heatup")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_registry_round_trip(heatup: Heatup) -> None:
    assert "(head)" in ok(heatup("db", "upgrade"))
    add = [
        "sessions",
        "add",
        "--gateway-id",
        "42",
        "--schedule",
        "*/30 * * * *",
        "--jitter",
        "120",
        "--timezone",
        "Europe/Berlin",
        "--label",
        "berlin office",
    ]
    out = ok(heatup(*add))
    assert "registered session 42" in out
    ok(heatup("sessions", "add", "--gateway-id", "43", "--schedule", "6h", "--disabled"))

    table = ok(heatup("sessions", "list")).splitlines()
    assert table[0].split()[:4] == ["GATEWAY", "ID", "LABEL", "ENABLED"]
    assert table[1].split()[:2] == ["42", "berlin"] and "*/30 * * * *" in table[1]
    assert table[2].split()[:4] == ["43", "-", "no", "active"]
    # Aligned: every column starts at the same offset on every line.
    assert len({line.index("STATE") for line in table[:1]} | {table[1].index("active")}) == 1

    listed = json.loads(ok(heatup("sessions", "list", "--json")))
    assert [(s["gateway_session_id"], s["enabled"]) for s in listed] == [(42, True), (43, False)]
    shown = json.loads(ok(heatup("sessions", "show", "42", "--json")))
    assert shown["timezone"] == "Europe/Berlin" and shown["jitter_seconds"] == 120
    assert "berlin office" in ok(heatup("sessions", "show", "42"))

    ok(heatup("sessions", "disable", "42"))
    assert json.loads(ok(heatup("sessions", "show", "42", "--json")))["enabled"] is False
    ok(heatup("sessions", "enable", "42"))
    assert "history is kept" in ok(heatup("sessions", "remove", "43"))
    assert [
        s["gateway_session_id"] for s in json.loads(ok(heatup("sessions", "list", "--json")))
    ] == [42]


def test_sessions_edit_changes_what_it_is_given_and_is_audited(
    heatup: Heatup, database_url: str
) -> None:
    ok(heatup("db", "upgrade"))
    ok(heatup("sessions", "add", "--gateway-id", "44", "--schedule", "6h", "--label", "old"))
    out = ok(heatup("sessions", "edit", "44", "--schedule", "0 9 * * *", "--jitter", "600",
                    "--timezone", "Asia/Tokyo", "--account-created", "2024-05-01"))  # fmt: skip
    assert "session 44 edited (0 9 * * *, jitter 600 s, Asia/Tokyo)" in out
    shown = json.loads(ok(heatup("sessions", "show", "44", "--json")))
    assert (shown["schedule"], shown["jitter_seconds"], shown["timezone"]) == (
        "0 9 * * *",
        600,
        "Asia/Tokyo",
    )
    assert shown["label"] == "old" and shown["account_created_at"].startswith("2024-05-01")
    ok(heatup("sessions", "edit", "44", "--label", ""))
    assert json.loads(ok(heatup("sessions", "show", "44", "--json")))["label"] is None
    # The rules of a new row, with their words; nothing is written.
    assert_usage_error(heatup("sessions", "edit", "44", "--jitter", "-1"), "jitter_seconds")
    assert_usage_error(heatup("sessions", "edit", "44", "--schedule", "when pigs fly"), "schedule")
    assert_usage_error(heatup("sessions", "edit", "44"), "nothing to change")
    assert_usage_error(
        heatup("sessions", "edit", "45", "--label", "x"), "no session with gateway id 45"
    )
    assert json.loads(ok(heatup("sessions", "show", "44", "--json")))["jitter_seconds"] == 600
    audit = SQL(database_url)(
        "SELECT via, actor, action FROM audit_log WHERE gateway_session_id = 44 ORDER BY id"
    )
    assert audit == [["cli", "cli", "register"], ["cli", "cli", "edit"], ["cli", "cli", "edit"]]


def test_sessions_import_is_all_or_nothing_and_names_each_bad_line(
    heatup: Heatup, tmp_path: Path
) -> None:
    ok(heatup("db", "upgrade"))
    ok(heatup("sessions", "add", "--gateway-id", "3", "--schedule", "6h"))
    pool = tmp_path / "pool.csv"
    pool.write_text(
        "gateway_id,schedule,jitter_seconds,label\n"
        "1,6h,60,first\n"
        "2,when pigs fly,0,\n"
        "3,1d,0,already there\n"
        "4,1d,0,\n",
        encoding="utf-8",
    )
    refused = heatup("sessions", "import", str(pool))
    assert refused.code == 2, refused.stderr
    problems = refused.stderr.splitlines()
    assert problems[0].startswith(f"{pool}: line 3: ") and "schedule" in problems[0]
    assert len(problems) == 2 and "nothing was registered" in problems[1]
    listed = json.loads(ok(heatup("sessions", "list", "--json")))
    assert [s["gateway_session_id"] for s in listed] == [3]

    skipped = heatup("sessions", "import", str(pool), "--skip-invalid")
    assert skipped.code == 0, skipped.stderr
    assert skipped.stderr.splitlines() == [
        problems[0],
        f"{pool}: line 4: a session with gateway id 3 is already registered",
    ]
    assert "registered 2 of 4 sessions; 2 rows skipped" in skipped.stdout
    listed = json.loads(ok(heatup("sessions", "list", "--json")))
    assert sorted(s["gateway_session_id"] for s in listed) == [1, 3, 4]


def test_an_export_imports_into_another_database_as_the_same_registry(
    heatup: Heatup, tmp_path: Path
) -> None:
    ok(heatup("db", "upgrade"))
    ok(heatup("sessions", "add", "--gateway-id", "7", "--schedule", "*/30 * * * *",
              "--timezone", "Asia/Tokyo", "--label", 'a "quoted", label',
              "--account-created", "2024-01-02"))  # fmt: skip
    ok(heatup("sessions", "add", "--gateway-id", "8", "--schedule", "6h", "--disabled"))
    fields = ("gateway_session_id", "label", "enabled", "schedule", "timezone",
              "jitter_seconds", "account_created_at")  # fmt: skip
    before = [
        {name: s[name] for name in fields}
        for s in json.loads(ok(heatup("sessions", "list", "--json")))
    ]
    for kind in ("csv", "jsonl"):
        exported = tmp_path / f"pool.{kind}"
        ok(heatup("sessions", "export", "--format", kind, "--output", str(exported)))
        other = {"HEATUP_DATABASE__URL": f"sqlite:///{tmp_path / f'other-{kind}.db'}"}
        ok(heatup("db", "upgrade", env=other))
        assert "registered 2 of 2" in ok(heatup("sessions", "import", str(exported), env=other))
        again = [
            {name: s[name] for name in fields}
            for s in json.loads(ok(heatup("sessions", "list", "--json", env=other)))
        ]
        assert again == before
    assert ok(heatup("sessions", "export")).splitlines()[0] == (
        "gateway_id,schedule,jitter_seconds,timezone,label,account_created_at,enabled"
    )


def test_channel_commands(heatup: Heatup) -> None:
    ok(heatup("db", "upgrade"))
    ok(heatup("channels", "add", "@NASA", "--category", "science", "--title", "NASA"))
    assert ok(heatup("channels", "list")).splitlines()[1].split() == [
        "@nasa",
        "science",
        "NASA",
        "yes",
        "-",
    ]
    ok(heatup("channels", "disable", "@nasa"))
    (listed,) = json.loads(ok(heatup("channels", "list", "--json")))
    assert listed["enabled"] is False and listed["username"] == "@nasa"  # one spelling
    ok(heatup("channels", "enable", "nasa"))


# The whole table of bad input runs in-process in tests/integration/test_cli_errors.py; these
# show that the installed entry point turns each kind into exit 2 and one line.
BAD_INPUT = [
    (["sessions", "add", "--gateway-id", "abc", "--schedule", "6h"], "positive integer"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "6h", "--jitter", "x"], "invalid int"),
    (["sessions", "show", "99"], "no session with gateway id 99"),
    (["channels", "add", "@x'); __import__('os')#"], "not a public username"),
    (["db", "downgrade", "nosuchrev"], "nosuchrev"),
    (["--config", "/nonexistent/heatup.toml", "sessions", "list"], "does not exist"),
]


def test_bad_input_is_one_line_and_exit_2(heatup: Heatup) -> None:
    ok(heatup("db", "upgrade"))
    for args, fragment in BAD_INPUT:
        assert_usage_error(heatup(*args), fragment)
    # Nothing was written.
    assert json.loads(ok(heatup("sessions", "list", "--json"))) == []
    assert json.loads(ok(heatup("channels", "list", "--json"))) == []


def test_duplicate_registration_is_refused(heatup: Heatup) -> None:
    ok(heatup("db", "upgrade"))
    ok(heatup("sessions", "add", "--gateway-id", "5", "--schedule", "6h", "--label", "first"))
    result = heatup("sessions", "add", "--gateway-id", "5", "--schedule", "1d", "--label", "second")
    assert_usage_error(result, "gateway id 5 is already registered")
    assert json.loads(ok(heatup("sessions", "show", "5", "--json")))["label"] == "first"


def test_bad_environment_setting_exits_2(heatup: Heatup) -> None:
    result = heatup("sessions", "list", env={"HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS": "none"})
    assert_usage_error(result, "scheduler.max_concurrent_runs", "'none'")


def test_unmigrated_database_is_a_clear_failure(heatup: Heatup) -> None:
    result = heatup("sessions", "list")
    assert result.code == 1
    assert result.stderr.strip() == (
        f"heatup: error: the database has no heatup schema, heatup needs {head_revision()}: "
        "run `heatup db upgrade`"
    )


def test_unreachable_database_is_a_clear_failure(tmp_path: Path) -> None:
    result = run_heatup(
        "sessions",
        "list",
        env={"HEATUP_DATABASE__URL": "postgresql://heatup:pw-in-url@127.0.0.1:9/heatup"},
        cwd=tmp_path,
    )
    assert result.code == 1
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "is not available" in result.stderr and "127.0.0.1:9" in result.stderr
    assert "pw-in-url" not in result.stderr


def test_missing_sqlite_folder_is_a_clear_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent' / 'heatup.db'}"
    result = run_heatup("db", "upgrade", env={"HEATUP_DATABASE__URL": url}, cwd=tmp_path)
    assert result.code == 1 and "absent does not exist" in result.stderr


def test_db_current_and_downgrade(heatup: Heatup) -> None:
    assert ok(heatup("db", "current")).startswith("no schema")
    ok(heatup("db", "upgrade"))
    assert ok(heatup("db", "current")).strip() == f"{head_revision()} (head)"
    assert ok(heatup("db", "downgrade", "0001")).startswith("0001 (head is")
    assert ok(heatup("db", "downgrade", "base")).startswith("no schema")
    assert ok(heatup("db", "upgrade")).strip() == f"{head_revision()} (head)"


def test_alembic_check_finds_no_drift_after_heatup_db_upgrade(
    heatup: Heatup, database_url: str
) -> None:
    ok(heatup("db", "upgrade"))
    alembic = Path(sys.executable).with_name("alembic")
    completed = subprocess.run(
        [
            str(alembic),
            "-c",
            str(REPO / "alembic.ini"),
            "-x",
            f"database_url={database_url}",
            "check",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "No new upgrade operations detected" in completed.stdout


def test_rows_written_by_hand_are_listed_not_fatal(tmp_path: Path) -> None:
    database = tmp_path / "hand.db"
    env = {"HEATUP_DATABASE__URL": f"sqlite:///{database}"}
    ok(run_heatup("db", "upgrade", env=env, cwd=tmp_path))
    with sqlite3.connect(database) as connection:  # a plain SQL client, as an admin would
        connection.execute(
            "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone) "
            "VALUES ('abc', 'every now and then', 5, 'Mars/Base')"
        )
    listed = json.loads(ok(run_heatup("sessions", "list", "--json", env=env, cwd=tmp_path)))
    assert listed[0]["gateway_session_id"] == "abc"
    assert "every now and then" in ok(run_heatup("sessions", "list", env=env, cwd=tmp_path))


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "heatup.toml"
    config.write_text("[scheduler]\nmax_concurrent_runs = 12\n")
    result = run_heatup(
        "--config",
        str(config),
        "check-config",
        env={
            "HEATUP_GATEWAY__TOKEN": "gw-secret-123",
            "HEATUP_DATABASE__URL": "postgresql://u:db-secret-456@db/heatup",
        },
    )
    out = ok(result)
    assert f"# config file: {config}" in out
    assert "max_concurrent_runs = 12" in out
    assert 'token = "********"' in out
    assert "gw-secret-123" not in out and "db-secret-456" not in out
    assert "# api_key is not set" in out


def test_check_config_reports_bad_values(tmp_path: Path) -> None:
    config = tmp_path / "heatup.toml"
    config.write_text("[executor]\ntime_scale = -1\n")
    result = run_heatup("--config", str(config), "check-config")
    assert_usage_error(result, "config key executor.time_scale: value -1 is not allowed")


def test_demo_shows_runs_live_then_a_summary(tmp_path: Path) -> None:
    result = run_heatup("demo", "--duration", "12", cwd=tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    out = result.stdout
    assert (tmp_path / "heatup-demo.db").exists()
    assert "started (schedule)" in out and "succeeded" in out  # runs start and finish live
    assert "join_channel" in out  # and each action shows as it ends
    summary = out.split("summary (all runs in the demo database):", 1)[1]
    lines = {line.split()[0]: line for line in summary.splitlines() if line[:1].isdigit()}
    assert set(lines) == {"1", "2", "3", "4", "9001"}
    assert "needs_attention" in lines["9001"]  # the revoked account is set aside
    again = run_heatup("demo", "--duration", "1", cwd=tmp_path)  # re-running is harmless
    assert again.code == 0, again.stderr


def test_sandbox_refuses_bad_faults_and_worlds(tmp_path: Path) -> None:
    assert_usage_error(run_heatup("sandbox", "--faults", "5xx=7"), "between 0 and 1")
    world = tmp_path / "w.toml"
    world.write_text("[[sessions]]\nid = -1\n")
    assert_usage_error(run_heatup("sandbox", "--world", str(world)), "positive integer")

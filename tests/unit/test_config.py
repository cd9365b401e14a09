from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from heatup_daemon.config.file import effective_settings, load_settings
from heatup_daemon.config.sections import MASK, SECRET_KEYS, GatewaySettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.scheduler.reconcile_s == 10
    assert settings.api.port == 8080
    assert settings.database.url == f"sqlite+aiosqlite:///{tmp_path / 'heatup.db'}"
    assert settings.gateway.token is None
    assert not settings.llm.configured
    assert len(settings.channels) >= 20


def test_shipped_config_states_exactly_the_defaults() -> None:
    assert load_settings(SHIPPED) == Settings()


def test_shipped_config_documents_every_key() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    documented: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line):
            section = match.group(1)
        elif match := re.match(r"#? ?(\w+)(:| =)", line):
            documented.setdefault(section, set()).add(match.group(1))
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            if name != "channels":
                assert name in documented[""], f"top-level key {name} is not in config.toml"
            continue
        for key in model.model_fields:
            assert key in documented.get(name, set()), f"{name}.{key} is not in config.toml"


def test_state_directory_holds_the_default_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/heatup:/var/lib/other")
    assert load_settings().database.url == "sqlite+aiosqlite:////var/lib/heatup/heatup.db"


def test_precedence_file_then_environment_then_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "node_name = 'from-file'\n[scheduler]\nmax_concurrent_runs = 5\nreconcile_s = 3\n",
    )
    settings = load_settings(path)
    assert (settings.node_name, settings.scheduler.max_concurrent_runs) == ("from-file", 5)

    monkeypatch.setenv("HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS", "7")
    monkeypatch.setenv("HEATUP_NODE_NAME", "from-env")
    monkeypatch.setenv("HEATUP_GATEWAY__TOKEN", "env-token")
    settings = load_settings(path)
    assert settings.scheduler.max_concurrent_runs == 7
    assert settings.scheduler.reconcile_s == 3  # untouched keys keep the file's value
    assert settings.node_name == "from-env"
    assert settings.gateway.token is not None
    assert settings.gateway.token.get_secret_value() == "env-token"

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "gateway.token").write_text("file-token\n")
    (credentials / "llm.api_key").write_text("sk-file")
    (credentials / "api.token").write_text("api-file-token-0123")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load_settings(path)
    assert settings.gateway.token is not None and settings.llm.api_key is not None
    assert settings.api.token is not None
    assert settings.gateway.token.get_secret_value() == "file-token"
    assert settings.llm.api_key.get_secret_value() == "sk-file"
    assert settings.api.token.get_secret_value() == "api-file-token-0123"
    assert settings.llm.configured


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = write(tmp_path, "node_name = 'system'\n", "system.toml")
    from_env = write(tmp_path, "node_name = 'env'\n", "env.toml")
    explicit = write(tmp_path, "node_name = 'explicit'\n", "explicit.toml")
    monkeypatch.setattr("heatup_daemon.config.file.SYSTEM_CONFIG_PATH", system)
    assert load_settings().node_name == "system"
    monkeypatch.setenv("HEATUP_CONFIG", str(from_env))
    assert load_settings().node_name == "env"
    assert load_settings(explicit).node_name == "explicit"


def test_database_urls_get_async_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    for given, expected in [
        ("postgresql://u:p@db/heatup", "postgresql+asyncpg://u:p@db/heatup"),
        ("postgres://db/heatup", "postgresql+asyncpg://db/heatup"),
        ("postgresql+psycopg://db/heatup", "postgresql+psycopg://db/heatup"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ]:
        monkeypatch.setenv("HEATUP_DATABASE__URL", given)
        assert load_settings().database.url == expected


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[scheduler]\nmax_concurrent_runs = 0\n",
            "config key scheduler.max_concurrent_runs: value 0 is not allowed: Input should be "
            "greater than or equal to 1",
        ),
        (
            "[scheduler]\nreconcile_s = 'soon'\n",
            "config key scheduler.reconcile_s: value 'soon' is not allowed",
        ),
        (
            "[scheduler]\nreconcile = 5\n",
            "config key scheduler.reconcile: unknown key; allowed here: reconcile_s,",
        ),
        ("[schedular]\nx = 1\n", "config key schedular: unknown key; allowed here: node_name,"),
        (
            "[executor]\ndelay_min_s = 20\n",
            "executor.delay_min_s (20.0) must not exceed executor.delay_max_s (10.0)",
        ),
        ("[executor]\nlong_pause_chance = 1.5\n", "config key executor.long_pause_chance"),
        (
            "[scheduler]\nheartbeat_s = 100\n",
            "scheduler.stale_run_s (120) must exceed scheduler.heartbeat_s (100) + "
            "gateway.retry_deadline_s (45) + 2 s, so that between two renewals a live run's "
            "lease always covers the gateway call it makes: raise it above 147",
        ),
        (
            "[gateway]\nretry_deadline_s = 300\nread_timeout_s = 60\n",
            "scheduler.stale_run_s (120) must exceed",
        ),
        (
            "[api]\nhost = '0.0.0.0'\n",
            "api.host '0.0.0.0' is not a loopback address, so api.token is required",
        ),
        ("[database]\nurl = 'mysql://db/x'\n", "unsupported database 'mysql'"),
        ("[database]\nurl = 'not a url'\n", "not a database URL"),
        ("[gateway]\nbase_url = 'ftp://gw'\n", "must be an http:// or https:// URL"),
        ("[llm]\nresponse_format = 'yaml'\n", "config key llm.response_format: value 'yaml'"),
        (
            "[[channels]]\nusername = '@ok_name'\n[[channels]]\nusername = '@OK_NAME'\n",
            "channel @ok_name is listed twice",
        ),
        ("[[channels]]\nusername = \"@x'); __import__('os')\"\n", "is not a public username"),
        ("[service]\nlog_level = 'LOUD'\n", "config key service.log_level: value 'LOUD'"),
    ],
)
def test_bad_values_name_key_value_and_rule(tmp_path: Path, toml: str, message: str) -> None:
    error = config_error(write(tmp_path, toml))
    assert message in error
    assert "config.toml" in error  # says which file


def test_several_bad_keys_are_all_reported(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "[api]\nport = -1\n[history]\nretention_days = 0\n"))
    assert "api.port" in error and "history.retention_days" in error


def test_bad_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATUP_API__PORT", "eighty")
    assert "config key api.port: value 'eighty' is not allowed" in config_error()


def test_non_loopback_api_with_token_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEATUP_API__TOKEN", "t0ken-long-enough-1")
    assert load_settings(write(tmp_path, "[api]\nhost = '0.0.0.0'\n")).api.host == "0.0.0.0"


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secrets_are_refused_in_the_file(tmp_path: Path, key: str) -> None:
    section, name = key.split(".")
    error = config_error(write(tmp_path, f"[{section}]\n{name} = 'hunter2'\n"))
    assert f"{key} is a secret and is not read from config.toml" in error
    assert f"HEATUP_{section.upper()}__{name.upper()}" in error
    assert "hunter2" not in error


def test_error_messages_never_show_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATUP_API__TOKEN", "super-secret-api-token")
    monkeypatch.setenv("HEATUP_GATEWAY__TOKEN", "super-secret-gateway-token")
    error = config_error(write(tmp_path, "[api]\nport = 99999\n[gateway]\nbase_url = 'nope'\n"))
    assert "api.port" in error and "gateway.base_url" in error
    assert "super-secret" not in error


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in config_error(tmp_path / "absent.toml")


def test_missing_file_named_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATUP_CONFIG", str(tmp_path / "absent.toml"))
    assert "absent.toml does not exist" in config_error()


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "[scheduler]\nreconcile_s = \n"))
    assert "is not valid TOML" in error and "line 2" in error


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"node_name = '\xff'\n")
    assert "cannot be read" in config_error(path) or "not valid TOML" in config_error(path)


def test_unreadable_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gateway.token").mkdir()  # a folder where a file should be
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert "credential file" in config_error() and "gateway.token" in config_error()


def test_effective_settings_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATUP_GATEWAY__TOKEN", "gw-secret")
    monkeypatch.setenv("HEATUP_DATABASE__URL", "postgresql://heatup:db-password@db/heatup")
    sections = dict(effective_settings(load_settings()))
    assert sections["gateway"]["token"] == MASK
    assert sections["llm"]["api_key"] is None
    assert "db-password" not in str(sections)
    assert "gw-secret" not in str(sections)


def test_the_read_token_comes_from_its_credential_file_and_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api.token").write_text("acting-token-long-enough\n", encoding="utf-8")
    (tmp_path / "api.read_token").write_text("reading-token-long-enough\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = load_settings()
    assert settings.api.read_token is not None
    assert settings.api.read_token.get_secret_value() == "reading-token-long-enough"
    assert "reading-token-long-enough" in settings.secret_values()  # masked in the logs
    sections = dict(effective_settings(settings))
    assert sections["api"]["read_token"] == MASK
    assert "reading-token" not in str(sections)


def test_shipped_file_is_valid_toml() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    assert {"database", "gateway", "llm", "scheduler", "channels"} <= set(data)


@pytest.mark.parametrize(
    "key", ["HEATUP_API__TOKEN", "HEATUP_GATEWAY__TOKEN", "HEATUP_LLM__API_KEY"]
)
@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_an_empty_secret_is_refused_not_taken_for_none(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    assert "is empty" in config_error()


def test_an_empty_credential_file_cannot_open_a_public_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api.token").write_text("\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("HEATUP_API__HOST", "0.0.0.0")
    error = config_error()
    assert "api.token" in error and "is empty" in error


def test_a_short_api_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATUP_API__TOKEN", "short")
    assert "shorter than 16 characters" in config_error()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://heatup:pw-in-url-1@db/heatup",
        "postgresql://heatup:pw-in-url-1@db:notaport/heatup",
        "nonsense://heatup:pw-in-url-1@db/heatup?password=pw-in-url-1",
    ],
)
def test_a_bad_database_url_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("HEATUP_DATABASE__URL", url)
    error = config_error()
    assert "database.url" in error and "pw-in-url" not in error


def test_check_config_masks_passwords_wherever_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HEATUP_DATABASE__URL", "postgresql://heatup@db/heatup?password=pw-in-query-1"
    )
    monkeypatch.setenv("HEATUP_GATEWAY__BASE_URL", "https://user:pw-in-gateway-1@gw.example")
    monkeypatch.setenv("HEATUP_LLM__BASE_URL", "https://llm.example/v1?api_key=pw-in-llm-1")
    shown = str(list(effective_settings(load_settings())))
    assert "pw-in" not in shown and "gw.example" in shown


def test_a_deadline_that_leaves_no_retry_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATUP_GATEWAY__READ_TIMEOUT_S", "30")
    monkeypatch.setenv("HEATUP_GATEWAY__RETRY_DEADLINE_S", "30")
    assert "is never retried" in config_error()
    defaults = GatewaySettings()
    assert defaults.retry_deadline_s > 2 * defaults.read_timeout_s


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("::bad::secret", "'********'"),
        ("postgresql://admin:hunter2@db:notaport/heatup", "'postgresql://********@db:notaport"),
        ("mysql://admin:hunter2@db/heatup", "'mysql://admin:***@db/heatup'"),
    ],
)
def test_a_database_url_heatup_refuses_is_shown_masked(
    monkeypatch: pytest.MonkeyPatch, url: str, shown: str
) -> None:
    monkeypatch.setenv("HEATUP_DATABASE__URL", url)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert "secret" not in message and "hunter2" not in message
    assert f"config key database.url: value {shown}" in message


def test_the_schedulers_old_key_names_are_read_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[scheduler]\nreconcile_seconds = 3\nheartbeat_s = 10\n")
    monkeypatch.setenv("HEATUP_SCHEDULER__STALE_RUN_SECONDS", "90")
    settings = load_settings(path)
    assert (settings.scheduler.reconcile_s, settings.scheduler.stale_run_s) == (3, 90)
    assert settings.scheduler.heartbeat_s == 10
    assert sorted(settings.renamed_keys) == [
        "scheduler.reconcile_seconds is now scheduler.reconcile_s; the old name is read "
        "until the next release",
        "scheduler.stale_run_seconds is now scheduler.stale_run_s; the old name is read "
        "until the next release",
    ]
    # Both names given: the new one is the value.
    both = write(tmp_path, "[scheduler]\nroll_up_seconds = 5\nroll_up_s = 7\n", "both.toml")
    assert load_settings(both).scheduler.roll_up_s == 7
    monkeypatch.delenv("HEATUP_SCHEDULER__STALE_RUN_SECONDS")
    assert load_settings(write(tmp_path, "", "new.toml")).renamed_keys == []

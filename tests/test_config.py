"""Settings: defaults, ACED_* environment, the TOML file named by ACED_CONFIG, one-line errors, secrets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from daemon.config import ConfigError, Settings, load_settings
from daemon.redis_conn import describe_redis, redacted, redis_url
from schemas import DEFAULT_MAX_CONTENT_BYTES

SECRET = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ACED_* variable leaks in from the developer or another test; relative paths land in tmp_path."""
    for name in [v for v in os.environ if v.startswith("ACED_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_toml(path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("ACED_CONFIG", str(path))
    return path


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings(**overrides)
    message = str(exc.value)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# -------------------------------------------------------------------------------------------- defaults


def test_defaults(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir == tmp_path / "aced-data"
    assert s.data_dir.is_absolute()
    assert s.config is None
    assert s.redis_url is None
    assert s.redis_username is None
    assert s.redis_password is None
    assert s.key_prefix == "aced"
    assert s.batch_size == 500
    assert s.block_ms == 1000
    assert s.max_in_flight == 2
    assert s.max_deliveries == 5
    assert s.claim_idle_ms == 60_000
    assert s.retention_s == 7 * 86400
    assert s.max_content_bytes == DEFAULT_MAX_CONTENT_BYTES
    assert s.max_entry_bytes == 4 * 1024 * 1024
    assert s.sqlite_synchronous == "FULL"
    assert s.tagger == "rules"
    assert s.log_level == "info"
    assert s.log_format == "auto"
    assert s.shutdown_timeout_s == 30.0


def test_derived_paths_and_names(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path / "d")
    assert s.store_path == tmp_path / "d" / "aced.sqlite3"
    assert s.redis_dir == tmp_path / "d" / "redis"
    assert s.redis_socket == tmp_path / "d" / "redis" / "redis.sock"
    assert s.consumer == f"{socket.gethostname()}-{os.getpid()}"
    assert load_settings(consumer_name="worker-1").consumer == "worker-1"
    # Unset ACED_REDIS_URL: the embedded server's socket under the data dir.
    assert redis_url(s) == f"unix://{s.redis_socket}"
    assert describe_redis(s) == f"embedded ({s.redis_socket})"


def test_data_dir_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings(data_dir="~/aced").data_dir == tmp_path / "home" / "aced"


# ----------------------------------------------------------------------------------------- environment


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACED_BATCH_SIZE", "7")
    monkeypatch.setenv("ACED_KEY_PREFIX", "team7")
    monkeypatch.setenv("ACED_DATA_DIR", "rel/data")
    monkeypatch.setenv("ACED_RETENTION_S", "0")
    monkeypatch.setenv("ACED_LOG_LEVEL", "debug")
    monkeypatch.setenv("ACED_TAGGER", "none")
    monkeypatch.setenv("ACED_REDIS_URL", "redis://127.0.0.1:6390/2")
    s = load_settings()
    assert s.batch_size == 7
    assert s.key_prefix == "team7"
    assert s.data_dir == tmp_path / "rel" / "data"
    assert s.retention_s == 0
    assert s.log_level == "debug"
    assert s.tagger == "none"
    assert s.redis_url is not None
    assert s.redis_url.get_secret_value() == "redis://127.0.0.1:6390/2"


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("aced_block_ms", "250")
    assert load_settings().block_ms == 250


def test_arguments_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACED_BATCH_SIZE", "7")
    assert load_settings(batch_size=9).batch_size == 9
    # load_settings drops None overrides so an unset CLI flag does not hide the environment.
    assert load_settings(batch_size=None).batch_size == 7


# ----------------------------------------------------------------------------------------------- TOML


def test_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "aced.toml",
        'batch_size = 42\nkey_prefix = "fromfile"\nretention_s = 3600.5\nlog_format = "json"\n',
        monkeypatch,
    )
    s = load_settings()
    assert s.batch_size == 42
    assert s.key_prefix == "fromfile"
    assert s.retention_s == 3600.5
    assert s.log_format == "json"
    assert s.config == path


def test_env_beats_file_and_arguments_beat_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path / "aced.toml", "batch_size = 42\nblock_ms = 300\nmax_deliveries = 9\n", monkeypatch)
    monkeypatch.setenv("ACED_BATCH_SIZE", "8")
    monkeypatch.setenv("ACED_BLOCK_MS", "400")
    s = load_settings(block_ms=500)
    assert s.batch_size == 8  # env over file
    assert s.block_ms == 500  # argument over env over file
    assert s.max_deliveries == 9  # only the file sets it


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "aced.toml"
    monkeypatch.setenv("ACED_CONFIG", str(missing))
    message = config_error()
    assert "ACED_CONFIG" in message
    assert str(missing) in message


def test_config_that_is_a_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACED_CONFIG", str(tmp_path))
    assert "ACED_CONFIG" in config_error()


def test_toml_syntax_error_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path / "aced.toml", 'batch_size = "unterminated\nblock_ms = 3\n', monkeypatch)
    message = config_error()
    assert message.startswith("cannot read configuration")
    assert "line 1" in message


def test_unknown_key_in_file_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path / "aced.toml", "batch_sise = 10\n", monkeypatch)
    assert "batch_sise" in config_error()


# -------------------------------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("batch_size", "zero"),
        ("batch_size", "0"),
        ("batch_size", "10001"),
        ("block_ms", "-5"),
        ("max_in_flight", "17"),
        ("key_prefix", "has space"),
        ("key_prefix", "x" * 33),
        ("log_level", "loud"),
        ("log_format", "xml"),
        ("sqlite_synchronous", "OFF"),
        ("tagger", "llm"),
        ("janitor_interval_s", "0"),
        ("max_entry_bytes", "10"),
        ("max_content_bytes", "1.5"),
        ("retention_s", "-1"),
    ],
)
def test_invalid_env_value_is_one_line_naming_the_setting(
    setting: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"ACED_{setting.upper()}", value)
    message = config_error()
    assert message.startswith(f"invalid setting {setting}: ")


def test_invalid_file_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path / "aced.toml", 'batch_size = "many"\n', monkeypatch)
    assert config_error().startswith("invalid setting batch_size: ")


def test_several_invalid_values_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACED_BATCH_SIZE", "0")
    monkeypatch.setenv("ACED_BLOCK_MS", "0")
    monkeypatch.setenv("ACED_LOG_LEVEL", "loud")
    assert config_error().endswith("(and 2 more)")


def test_invalid_argument_is_one_line() -> None:
    assert config_error(batch_size=0).startswith("invalid setting batch_size: ")


# ---------------------------------------------------------------------------------------------- secrets


def secret_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ACED_REDIS_URL", f"redis://recorder:{SECRET}@10.1.2.3:6390/0")
    monkeypatch.setenv("ACED_REDIS_PASSWORD", SECRET + "-2")
    return load_settings()


def test_secrets_not_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    s = secret_settings(monkeypatch)
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump()), repr(s.redis_url)):
        assert SECRET not in text
    assert s.redis_url is not None and SECRET in s.redis_url.get_secret_value()
    assert s.redis_password is not None and s.redis_password.get_secret_value() == SECRET + "-2"


def test_describe_redis_redacts_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    s = secret_settings(monkeypatch)
    described = describe_redis(s)
    assert SECRET not in described
    assert described == "redis://recorder:***@10.1.2.3:6390/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@localhost:6379/0", "redis://:***@localhost:6379/0"),
        (f"rediss://user:{SECRET}@cache.example:6380", "rediss://user:***@cache.example:6380"),
        (f"redis://user:{SECRET}@cache.example/3", "redis://user:***@cache.example/3"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redacted(url: str, shown: str) -> None:
    assert redacted(url) == shown
    assert describe_redis(Settings(redis_url=SecretStr(url))) == shown


@pytest.mark.parametrize(
    "url", [f"unix:///run/redis.sock?password={SECRET}", f"redis://localhost:6379/0?password={SECRET}"]
)
def test_describe_redis_redacts_query_password(url: str) -> None:
    assert SECRET not in describe_redis(Settings(redis_url=SecretStr(url)))


def test_redacted_keeps_ipv6_brackets() -> None:
    assert redacted(f"redis://:{SECRET}@[::1]:6379/0") == "redis://:***@[::1]:6379/0"


def test_config_errors_do_not_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_settings(monkeypatch)
    monkeypatch.setenv("ACED_BATCH_SIZE", "0")
    assert SECRET not in config_error()


def test_secret_from_file_not_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path / "aced.toml", f'redis_password = "{SECRET}"\n', monkeypatch)
    s = load_settings()
    assert s.redis_password is not None and s.redis_password.get_secret_value() == SECRET
    assert SECRET not in repr(s)
    assert SECRET not in describe_redis(s)

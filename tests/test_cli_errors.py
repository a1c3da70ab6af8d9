"""The CLI as a user meets it: real ``python -m daemon`` subprocesses. Every error a user can cause is a
non-zero exit with exactly one readable line on stderr, never a traceback; every command has ``--help``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from daemon.cli import build_parser
from daemon.redis_server import free_port
from schemas import AgentMessage, StreamKeys
from tests.helpers import REPO

SECRET = "hunter2-s3cret"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any ACED_* variable, a private data dir, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACED_")}
    env["ACED_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def aced(
    args: list[str], env: dict[str, str], stdin: str | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], exit_code: int | None = None) -> str:
    """Assert the process failed with one stderr line and no traceback; return that line."""
    assert proc.returncode != 0, proc
    if exit_code is not None:
        assert proc.returncode == exit_code, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].strip()
    assert "error" in lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------- argument errors


def test_no_command(tmp_path: Path) -> None:
    line = one_line_error(aced([], base_env(tmp_path)), 2)
    assert "COMMAND" in line


def test_unknown_command(tmp_path: Path) -> None:
    line = one_line_error(aced(["bogus"], base_env(tmp_path)), 2)
    assert "'bogus'" in line
    assert "publish" in line  # it lists what exists


def test_unknown_option(tmp_path: Path) -> None:
    line = one_line_error(aced(["status", "--colour"], base_env(tmp_path)), 2)
    assert "--colour" in line


def test_publish_without_agent(tmp_path: Path) -> None:
    line = one_line_error(aced(["publish", "--conversation", "c", "hi"], base_env(tmp_path)), 2)
    assert "--agent" in line


@pytest.mark.parametrize("agent", ["Bad Name", "Claude", "-x", "a" * 65])
def test_publish_invalid_agent_name(tmp_path: Path, agent: str) -> None:
    proc = aced(["publish", "--agent", agent, "--conversation", "c", "hi"], base_env(tmp_path))
    line = one_line_error(proc, 2)
    assert "agent" in line


def test_publish_invalid_message_id(tmp_path: Path) -> None:
    args = ["publish", "--agent", "claude", "--conversation", "c", "--message-id", "has space", "hi"]
    assert "message_id" in one_line_error(aced(args, base_env(tmp_path)), 2)


def test_publish_empty_text(tmp_path: Path) -> None:
    proc = aced(
        ["publish", "--agent", "claude", "--conversation", "c", "-"], base_env(tmp_path), stdin="  \n"
    )
    assert "empty" in one_line_error(proc, 2)


def test_publish_content_over_configured_limit(tmp_path: Path) -> None:
    env = base_env(tmp_path, ACED_MAX_CONTENT_BYTES="10")
    proc = aced(["publish", "--agent", "claude", "--conversation", "c", "ééééé-x"], env)
    line = one_line_error(proc, 2)
    assert "content" in line
    assert "12 bytes" in line  # 5 × 2 + 2


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--metadata", "{not json", "--metadata is not valid JSON"),
        ("--metadata", "[1, 2]", "--metadata must be a JSON object"),
        ("--metadata", "", "--metadata is not valid JSON"),
        ("--sender-tags", "tier=A", "--sender-tags is not valid JSON"),
    ],
)
def test_publish_bad_json_options(tmp_path: Path, flag: str, value: str, expected: str) -> None:
    proc = aced(
        ["publish", "--agent", "claude", "--conversation", "c", flag, value, "hi"], base_env(tmp_path)
    )
    assert expected in one_line_error(proc, 2)


def test_schema_without_subcommand(tmp_path: Path) -> None:
    one_line_error(aced(["schema"], base_env(tmp_path)), 2)


# ------------------------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    "command", [["status"], ["publish", "--agent", "claude", "--conversation", "c", "hi"]]
)
@pytest.mark.parametrize("value", ["zero", "0", "-3", "1e9"])
def test_bad_batch_size_env(tmp_path: Path, command: list[str], value: str) -> None:
    proc = aced(command, base_env(tmp_path, ACED_BATCH_SIZE=value))
    line = one_line_error(proc, 2)
    assert "batch_size" in line


@pytest.mark.parametrize(
    ("command", "stdin"),
    [(["run"], None), (["tag"], '{"agent": "a", "conversation_id": "c", "content": "hi"}')],
)
def test_bad_tag_core_env(tmp_path: Path, command: list[str], stdin: str | None) -> None:
    proc = aced(command, base_env(tmp_path, ACED_TAG_CORE="fast"), stdin=stdin)
    line = one_line_error(proc)
    assert "tag_core" in line.lower() and "compiled" in line


def test_config_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    proc = aced(["status"], base_env(tmp_path, ACED_CONFIG=str(missing)))
    line = one_line_error(proc, 2)
    assert "ACED_CONFIG" in line
    assert str(missing) in line


def test_config_file_with_syntax_error(tmp_path: Path) -> None:
    config = tmp_path / "aced.toml"
    config.write_text("batch_size = = 3\n")
    line = one_line_error(aced(["status"], base_env(tmp_path, ACED_CONFIG=str(config))), 2)
    assert "configuration" in line


def test_config_file_with_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "aced.toml"
    config.write_text("batch_sise = 3\n")
    line = one_line_error(aced(["status"], base_env(tmp_path, ACED_CONFIG=str(config))), 2)
    assert "batch_sise" in line


def test_config_error_does_not_show_secret(tmp_path: Path) -> None:
    env = base_env(tmp_path, ACED_REDIS_URL=f"redis://:{SECRET}@127.0.0.1:1/0", ACED_BLOCK_MS="x")
    proc = aced(["status"], env)
    one_line_error(proc, 2)
    assert SECRET not in proc.stderr + proc.stdout


# --------------------------------------------------------------------------------------- Redis not there


def test_status_with_unreachable_redis(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    proc = aced(["status"], base_env(tmp_path, ACED_REDIS_URL=url))
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.splitlines()) <= 1
    assert "UNHEALTHY" in proc.stdout
    assert "redis" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


def test_status_json_with_unreachable_redis(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    proc = aced(["status", "--json"], base_env(tmp_path, ACED_REDIS_URL=url))
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.splitlines()) <= 1
    report = orjson.loads(proc.stdout)
    assert report["healthy"] is False
    assert report["redis"]["ok"] is False
    assert report["redis"]["at"] == f"redis://:***@127.0.0.1:{port}/0"
    assert report["redis"]["error"]
    assert any(p.startswith("redis:") for p in report["problems"])
    assert SECRET not in proc.stdout + proc.stderr


def test_publish_with_embedded_redis_not_running(tmp_path: Path) -> None:
    proc = aced(["publish", "--agent", "claude", "--conversation", "c", "hi"], base_env(tmp_path))
    line = one_line_error(proc, 1)
    assert "not running" in line
    assert str(tmp_path / "data") in line


def test_publish_with_unreachable_redis_url(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    proc = aced(
        ["publish", "--agent", "claude", "--conversation", "c", "hi"], base_env(tmp_path, ACED_REDIS_URL=url)
    )
    line = one_line_error(proc, 1)
    assert "cannot reach Redis" in line
    assert SECRET not in proc.stderr + proc.stdout


def test_publish_reaches_a_running_redis(
    settings_env: Callable[..., dict[str, str]], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    """The same command line succeeds once Redis is there: the errors above are about the input."""
    proc = aced(
        ["publish", "--agent", "claude", "--conversation", "c", "--metadata", '{"k": 1}', "--json", "-"],
        settings_env(),
        stdin="héllo from stdin ✓",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = orjson.loads(proc.stdout)
    assert out["stream"] == keys.agent_stream("claude")
    got: Any = redis_client.xrange(out["stream"])
    [(entry_id, fields)] = got
    assert entry_id.decode() == out["entry_id"]
    message = AgentMessage.model_validate_json(fields[b"data"])
    assert message.message_id == out["message_id"]
    assert message.content == "héllo from stdin ✓"
    assert message.metadata == {"k": 1}


# --------------------------------------------------------------------------------------- schema export


def test_schema_export_into_path_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file\n")
    proc = aced(["schema", "export", "--out", str(blocker / "sub")], base_env(tmp_path))
    line = one_line_error(proc)
    assert str(blocker / "sub") in line
    assert blocker.read_text() == "a regular file\n"


def test_schema_export_onto_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(aced(["schema", "export", "--out", str(blocker)], base_env(tmp_path)))


def test_schema_export_writes_the_checked_in_files(tmp_path: Path) -> None:
    out = tmp_path / "json"
    proc = aced(["schema", "export", "--out", str(out)], base_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in (REPO / "schemas" / "json").glob("*.schema.json"))
    for name in written:
        assert (out / name).read_text() == (REPO / "schemas" / "json" / name).read_text()
    assert sorted(Path(line).name for line in proc.stdout.splitlines()) == written


# ------------------------------------------------------------------------------------------------ help


def registered_commands() -> list[str]:
    """Every command daemon/cli/__init__.py::_COMMAND_MODULES registered (modules that exist today)."""
    parser = build_parser()
    for action in parser._actions:  # argparse offers no public accessor for subcommands
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("aced has no subcommands")


def test_core_commands_are_registered() -> None:
    assert {"run", "publish", "tail", "status", "dlq", "schema"} <= set(registered_commands())


def test_top_level_help(tmp_path: Path) -> None:
    proc = aced(["--help"], base_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for command in registered_commands():
        assert command in proc.stdout


@pytest.mark.parametrize("command", [*([c] for c in registered_commands()), ["schema", "export"]], ids=str)
def test_command_help(tmp_path: Path, command: list[str]) -> None:
    proc = aced([*command, "--help"], base_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: aced {' '.join(command)}")
    assert proc.stderr == ""

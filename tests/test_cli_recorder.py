"""The recorder's CLI commands end to end: publish, tail, status, dlq list/show/replay."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
import redis

from daemon.cli import main
from daemon.config import Settings
from daemon.service import run_daemon
from schemas import StreamKeys
from tests.helpers import counts, make_messages, publish, recorded_ids


@pytest.fixture
def use_settings(
    monkeypatch: pytest.MonkeyPatch, settings_env: Callable[..., dict[str, str]]
) -> Callable[..., None]:
    """Point the in-process CLI at this test's Redis, prefix and data dir."""

    def apply(**overrides: object) -> None:
        for name, value in settings_env(**overrides).items():
            if name.startswith("ACED_"):
                monkeypatch.setenv(name, value)

    return apply


def test_publish_prints_the_message_id_and_the_daemon_records_it(
    use_settings: Callable[..., None],
    make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings()
    assert main(["publish", "--agent", "claude", "--conversation", "c9", "--sender-tags", '{"tier": "A"}',
                 "Should we shard the store by agent?"]) == 0  # fmt: skip
    message_id = capsys.readouterr().out.strip()
    run_daemon(make_settings(), burst=True)
    assert recorded_ids(make_settings()) == [message_id]
    assert main(["status", "--json"]) == 1  # the burst daemon is gone: unhealthy, but it still reports
    report = json.loads(capsys.readouterr().out)
    assert report["recorded"] == 1 and report["pending"] == 0 and report["dead_letters"] == 0


def test_publish_rejects_an_invalid_message_before_writing(
    use_settings: Callable[..., None],
    redis_client: redis.Redis,
    keys: StreamKeys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings()
    assert main(["publish", "--agent", "Not A Name", "--conversation", "c", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "agent" in err
    assert main(["publish", "--agent", "claude", "--conversation", "c", "   "]) == 2
    assert "empty" in capsys.readouterr().err
    assert not list(redis_client.scan_iter(match=f"{keys.prefix}:*"))


def test_tail_shows_the_latest_entries(
    use_settings: Callable[..., None],
    redis_client: redis.Redis,
    keys: StreamKeys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings()
    messages = make_messages("gemini", 5)
    publish(redis_client, keys, messages)
    assert main(["tail", "--agent", "gemini", "-n", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["data"]["message_id"] for line in lines] == [m.message_id for m in messages[-2:]]
    assert main(["tail", "-n", "1"]) == 0
    assert messages[-1].content[:40] in capsys.readouterr().out


def test_dlq_list_show_and_replay_after_raising_a_limit(
    use_settings: Callable[..., None],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    keys: StreamKeys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    small = make_settings(max_content_bytes=1000)
    use_settings(max_content_bytes=1000)
    [long_message] = [
        m.model_copy(update={"content": "a long design note. " * 100}) for m in make_messages("claude", 1)
    ]
    publish(redis_client, keys, [long_message])
    run_daemon(small, burst=True)
    assert counts(small).recorded == 0 and counts(small).dead_letters == 1

    assert main(["dlq", "list", "--json"]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["reason"] == "oversized" and listed["message_id"] == long_message.message_id
    assert main(["dlq", "show", str(listed["id"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    fields = {base64.b64decode(k): base64.b64decode(v) for k, v in shown["fields_base64"].items()}
    assert fields == {b"data": long_message.to_wire()}

    # The operator raises the limit and replays: the original bytes go back to their stream.
    use_settings(max_content_bytes=100_000)
    assert main(["dlq", "replay", str(listed["id"])]) == 0
    assert "replayed" in capsys.readouterr().out
    run_daemon(make_settings(max_content_bytes=100_000), burst=True)
    assert recorded_ids(small) == [long_message.message_id]
    assert main(["dlq", "list", "--pending-only", "--json"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["dlq", "show", "999999"]) == 1
    assert "no dead letter" in capsys.readouterr().err

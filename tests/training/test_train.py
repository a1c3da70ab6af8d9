"""The trainer: exact resume, the JSON-lines protocol, run artefacts, config errors, the loss options."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("pyrender")

from training.config import TrainConfig  # noqa: E402
from training.train import lr_at, sdf_loss  # noqa: E402

from .conftest import run_module, tiny_train_config  # noqa: E402

pytestmark = pytest.mark.training

PROGRESS_KEYS = {"event", "run_id", "iter", "loss", "lr", "batch_size", "vram_peak_mb", "samples_per_s"}


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]  # every stdout line must be JSON


def _losses(events: list[dict]) -> dict[int, float]:
    return {e["iter"]: e["loss"] for e in events if e["event"] == "progress"}


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    cfg = tiny_train_config(tmp, tiny_dataset, augment=True)
    proc = run_module("training.train", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    return tmp, _events(proc.stdout)


def test_protocol_on_stdout_and_in_the_run_folder(uninterrupted):
    tmp, events = uninterrupted
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("progress") == 4 and kinds.count("checkpoint") == 2 and kinds.count("eval") == 2
    for e in events:
        assert e["run_id"] == "run"
        if e["event"] == "progress":
            assert set(e) >= PROGRESS_KEYS
            assert e["batch_size"] == 4 and e["lr"] == pytest.approx(1e-4)
            assert e["loss"] > 0 and e["samples_per_s"] > 0 and e["mem_peak_mb"] > 0
    assert events[-1]["status"] == "completed" and events[-1]["iter"] == 4
    run = tmp / "run"
    assert [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()] == events
    for name in ("ckpt.pt", "ckpt.json", "config.json", "loss.png", "val.png", "lr.png", "memory.png"):
        assert (run / name).stat().st_size > 0
    assert json.loads((run / "ckpt.json").read_text())["step"] == 4


def test_resume_gives_the_same_next_loss(uninterrupted, tiny_dataset, tmp_path):
    _, full_events = uninterrupted
    cfg = tiny_train_config(tmp_path, tiny_dataset, augment=True)
    first = run_module("training.train", "--config", str(cfg), "--iters", "2")
    assert first.returncode == 0, first.stderr
    second = run_module("training.train", "--config", str(cfg), "--iters", "4", "--resume")
    assert second.returncode == 0, second.stderr
    events = _events(second.stdout)
    assert events[0]["event"] == "start" and events[0]["resumed"] is True and events[0]["iter"] == 2
    full, resumed = _losses(full_events), _losses(events)
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(full[step], rel=1e-5, abs=1e-7)
    assert _losses(_events(first.stdout)) == pytest.approx({1: full[1], 2: full[2]}, rel=1e-5)


def test_existing_run_needs_resume(uninterrupted):
    tmp, _ = uninterrupted
    proc = run_module("training.train", "--config", str(tmp / "run.json"))
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert _events(proc.stdout)[-1]["event"] == "error"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"iters": 0}', "iters must be >= 1"),
        ('{"itres": 5}', "unknown key(s) itres"),
        ('{"lr": "fast"}', "lr must be float"),
        ('{"model": {"grid": 32, "layers": 3}}', "unknown key(s) layers"),
        ('{"data_dir": "/nonexistent", "run_dir": "/tmp/x"}', "not a built dataset"),
        ("[1, 2]", "must hold a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_config_is_one_line_without_traceback(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    proc = run_module("training.train", "--config", str(path), timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    events = _events(proc.stdout)
    assert [e["event"] for e in events] == ["error"]


def test_missing_config_file(tmp_path):
    proc = run_module("training.train", "--config", str(tmp_path / "nope.json"), timeout=120)
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_loss_options():
    target = torch.tensor([[-0.05, 0.05, 0.5, 1.0]])
    pred = torch.zeros_like(target)
    plain = TrainConfig()
    assert float(sdf_loss(pred, target, plain)) == pytest.approx(float((target**2).mean()))
    truncated = TrainConfig(truncation=0.2)
    assert float(sdf_loss(pred, target, truncated)) == pytest.approx((0.05**2 * 2 + 0.2**2 * 2) / 4)
    weighted = TrainConfig(near_surface_weight=3.0, near_surface_band=0.1)
    # Near-surface voxels count 4 times: (4 * 0.0025 * 2 + 0.25 + 1.0) / (4 + 4 + 1 + 1)
    assert float(sdf_loss(pred, target, weighted)) == pytest.approx((4 * 0.0025 * 2 + 0.25 + 1.0) / 10)


def test_lr_schedule():
    cfg = TrainConfig(lr=1e-3, iters=100, warmup_iters=10, lr_schedule="cosine")
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    assert lr_at(55, cfg) < lr_at(20, cfg)
    assert lr_at(50, TrainConfig()) == pytest.approx(1e-4)

"""A tiny end-to-end run through the real CLIs: build + train + evaluate (``training.smoke``)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("pyrender")
pytest.importorskip("skimage")

from .conftest import TINY_DATASET, run_module

pytestmark = [pytest.mark.training, pytest.mark.slow]

METRICS = ("sdf_mae", "sdf_mae_near_surface", "iou", "chamfer")


def test_smoke_pipeline_end_to_end(tmp_path):
    cfg = {
        "iters": 6, "batch_size": 4, "checkpoint_every": 3, "eval_every": 3, "log_every": 2, "num_workers": 1,
        "threads": 1, "tensorboard": True, "model": {"base_channels": 16}, "lr": 1e-3,
        "dataset": {**TINY_DATASET, "meshes": 8},
    }
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = run_module("training.smoke", "--out", str(out), "--config", str(path), timeout=280)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"

    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["meshes_accepted"] == 8 and manifest["images"] == 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads((out / "run" / "metrics.json").read_text())
    for key in METRICS:
        for name in (key, f"baseline_{key}"):
            assert name in metrics
            assert metrics[name] is None or metrics[name] >= 0
    assert 0 <= metrics["iou"] <= 1 and 0 < metrics["sdf_mae"] < 2
    assert metrics["step"] == 6
    run = out / "run"
    assert (run / "predictions.png").stat().st_size > 0
    assert list((run / "predictions").glob("gt_*.obj"))
    assert list((run / "tb").iterdir())  # TensorBoard event files
    smoke = json.loads((out / "smoke.json").read_text())
    assert smoke["total_s"] > 0


def test_evaluate_without_a_run_is_a_clean_error(tmp_path):
    proc = run_module("training.evaluate", "--run", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert "no checkpoint" in proc.stderr and "Traceback" not in proc.stderr

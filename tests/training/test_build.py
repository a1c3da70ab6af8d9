"""The dataset builder: manifest contract, split without leakage, resume, rejections, timeouts, CLI errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("torch")
trimesh = pytest.importorskip("trimesh")
pytest.importorskip("pyrender")

from training.build_dataset import SPLITS, assign_split  # noqa: E402
from training.pool import run_jobs  # noqa: E402

from .conftest import TINY_DATASET, run_module  # noqa: E402

pytestmark = pytest.mark.training


def test_manifest_contract_and_arrays(tiny_dataset):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    for key in ("meshes_accepted", "meshes_rejected", "images"):
        assert isinstance(manifest[key], int)
    assert manifest["meshes_accepted"] + manifest["meshes_rejected"] == TINY_DATASET["meshes"]
    assert manifest["images"] == manifest["meshes_accepted"] * TINY_DATASET["views"]
    total = 0
    for split in SPLITS:
        images = np.load(tiny_dataset / split / "images.npy", mmap_mode="r")
        sdf = np.load(tiny_dataset / split / "sdf.npy", mmap_mode="r")
        assert images.dtype == np.uint8 and sdf.dtype == np.float16
        assert images.shape[1:] == (24, 24, 3)
        assert sdf.shape[1:] == (16, 16, 16)
        assert manifest["splits"][split]["images"] == len(images)
        total += len(images)
    assert total == manifest["images"]


def test_split_is_by_mesh_without_leakage(tiny_dataset):
    ids = {s: json.loads((tiny_dataset / s / "mesh_ids.json").read_text()) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a != b:
                assert not set(ids[a]) & set(ids[b])
    for split in SPLITS:
        view_mesh = np.load(tiny_dataset / split / "view_mesh.npy")
        counts = np.bincount(view_mesh, minlength=len(ids[split]))
        assert (counts == TINY_DATASET["views"]).all()  # every view of a mesh stays with it
        images = np.load(tiny_dataset / split / "images.npy", mmap_mode="r")
        # Item files agree with the split arrays: images really belong to the listed meshes.
        for m, mesh_id in enumerate(ids[split][:2]):
            with np.load(tiny_dataset / "items" / f"{mesh_id}.npz") as item:
                assert np.array_equal(images[view_mesh == m], item["images"])


def test_assign_split_is_deterministic_and_honours_the_test_hint():
    ids = [f"mesh_{i}" for i in range(2000)]
    splits = [assign_split(i, "", 0.1, 0.2) for i in ids]
    assert splits == [assign_split(i, "", 0.1, 0.2) for i in ids]
    share = {s: splits.count(s) / len(ids) for s in SPLITS}
    assert share["train"] == pytest.approx(0.7, abs=0.05) and share["test"] == pytest.approx(0.2, abs=0.05)
    assert all(assign_split(i, "test", 0.1, 0.2) == "test" for i in ids[:50])


def test_resume_skips_finished_meshes(tiny_dataset, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (tiny_dataset / "items").glob("*.npz")}
    cfg = tmp_path / "b.json"
    cfg.write_text(json.dumps({"dataset": TINY_DATASET}))
    proc = run_module("training.build_dataset", "--config", str(cfg), "--out", str(tiny_dataset),
                      "--no-progress")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert manifest["meshes_processed_this_run"] == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tiny_dataset / "items").glob("*.npz")}
    assert after == before


def test_bad_meshes_are_reported_and_skipped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    trimesh.creation.box().export(src / "good_box.obj")
    trimesh.creation.icosphere(2).export(src / "good_sphere.ply")
    (src / "corrupt.off").write_text("OFF\n3 1 0\n0 0 0\n")
    tube = trimesh.creation.cylinder(radius=0.3, height=1.0, sections=24)
    keep = np.abs(tube.triangles_center[:, 2]) < 0.49
    trimesh.Trimesh(tube.vertices, tube.faces[keep]).export(src / "open_tube.stl")
    out = tmp_path / "out"
    proc = run_module("training.build_dataset", "--source", f"folder:{src}", "--out", str(out),
                      "--views", "1",
                      "--resolution-px", "16", "--grid", "8", "--workers", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["meshes_accepted"] == 2
    assert manifest["meshes_rejected"] == 2
    assert manifest["rejection_rate"] == pytest.approx(0.5)
    reasons = {r["path"].rsplit("/", 1)[1]: r["reason"] for r in manifest["rejections"]}
    assert "corrupt" in reasons["corrupt.off"]
    assert "not watertight" in reasons["open_tube.stl"]


def test_pool_kills_an_overdue_job():
    start = time.monotonic()
    jobs = [("fast", (0.0,)), ("slow", (60.0,)), ("fast2", (0.0,))]
    results = {r.key: r for r in run_jobs(time.sleep, jobs, workers=1, timeout_s=3.0)}
    assert results["fast"].ok and results["fast2"].ok
    assert not results["slow"].ok and "timeout" in results["slow"].error
    assert time.monotonic() - start < 50  # did not wait for the 60 s job


def test_pool_reports_job_exceptions():
    results = list(run_jobs(int, [("bad", ("not a number",)), ("good", ("7",))], workers=1, timeout_s=30))
    by_key = {r.key: r for r in results}
    assert by_key["good"].value == 7
    assert "ValueError" in by_key["bad"].error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nowhere:/x"], "unknown source"),
        (["--source", "procedural", "--views", "0"], "views must be >= 1"),
        (["--source", "procedural", "--grid", "20"], "grid must be"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, message):
    proc = run_module("training.build_dataset", *args, "--out", str(tmp_path / "o"), "--no-progress")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

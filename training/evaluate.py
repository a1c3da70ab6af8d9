"""Evaluate a trained run on the test split against the mean-grid baseline.

Usage::

    python -m training.evaluate --run RUN_DIR [--data-dir DIR] [--split test] [--device auto]

Metrics (each also for the baseline that predicts the training set's mean SDF grid, prefixed ``baseline_``):

* ``sdf_mae``: mean absolute SDF error over all voxels; ``sdf_mae_near_surface``: over voxels with
  ``|sdf| < 0.1``;
* ``iou``: intersection over union of the occupancy ``sdf < 0``, averaged over images;
* ``chamfer``: symmetric Chamfer distance (mean nearest distance prediction -> ground truth plus ground truth
  -> prediction, in normalised units) between the marching-cubes surface of the predicted grid and the
  ground-truth mesh, over up to ``--chamfer-images`` images. Predictions with no zero crossing have no
  surface:
  they are counted in ``chamfer_failures`` and left out of the mean.

Writes ``RUN_DIR/metrics.json``, ``RUN_DIR/predictions/*.obj`` and ``RUN_DIR/predictions.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh
from torch.utils.data import DataLoader

from training import checkpoint
from training.data import IMAGENET_MEAN, IMAGENET_STD, SDFViews, mean_sdf_grid
from training.dataset_settings import ConfigError
from training.devices import select_device
from training.util import atomic_write_json, die, log

NEAR_SURFACE = 0.1
_CHAMFER_POINTS = 2048


def grid_surface(grid: np.ndarray, half_extent: float) -> trimesh.Trimesh | None:
    """Marching-cubes surface (level 0) of an SDF grid, in the grid's coordinates; None without a crossing."""
    from skimage.measure import marching_cubes

    if not (grid.min() < 0 < grid.max()):
        return None
    step = 2.0 * half_extent / (grid.shape[0] - 1)
    verts, faces, _, _ = marching_cubes(grid.astype(np.float32), level=0.0, spacing=(step, step, step))
    # skimage orients faces for increasing values outward; our SDF grows outward too, so normals point out.
    return trimesh.Trimesh(verts - half_extent, faces, process=False)


def chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh, seed: int) -> float:
    """Symmetric Chamfer distance between surfaces ``a`` and ``b`` from ``_CHAMFER_POINTS`` samples each."""
    from scipy.spatial import cKDTree

    pa, _ = trimesh.sample.sample_surface(a, _CHAMFER_POINTS, seed=seed)
    pb, _ = trimesh.sample.sample_surface(b, _CHAMFER_POINTS, seed=seed + 1)
    d_ab, _ = cKDTree(pb).query(pa)
    d_ba, _ = cKDTree(pa).query(pb)
    return float(d_ab.mean() + d_ba.mean())


def _iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of ``sdf < 0`` for ``(B, R, R, R)`` grids; 1 when both are empty."""
    p, g = pred < 0, gt < 0
    inter = (p & g).flatten(1).sum(1).float()
    union = (p | g).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class _Acc:
    """Running sums for one predictor."""

    def __init__(self) -> None:
        self.abs = self.near = 0.0
        self.n = self.n_near = 0
        self.iou: list[float] = []

    def add(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        err = (pred - gt).abs()
        near = gt.abs() < NEAR_SURFACE
        self.abs += float(err.sum())
        self.n += err.numel()
        self.near += float(err[near].sum())
        self.n_near += int(near.sum())
        self.iou.extend(_iou(pred, gt).tolist())

    def result(self) -> dict[str, float]:
        return {"sdf_mae": self.abs / max(1, self.n), "sdf_mae_near_surface": self.near / max(1, self.n_near),
                "iou": float(np.mean(self.iou)) if self.iou else 0.0}


def _gt_mesh(data_dir: Path, mesh_id: str, pose: np.ndarray, frame: str) -> trimesh.Trimesh:
    with np.load(data_dir / "items" / f"{mesh_id}.npz") as item:
        verts, faces = item["vertices"].astype(np.float64), item["faces"]
    if frame == "view":
        verts = verts @ pose[:3, :3]  # object -> camera axes: p_view = R^T p_obj (row vectors)
    return trimesh.Trimesh(verts, faces, process=False)


def evaluate(run_dir: Path, data_dir: Path | None = None, split: str = "test", device_name: str = "auto",
             chamfer_images: int = 64, examples: int = 4, batch_size: int = 16) -> dict[str, Any]:
    """Compute the metrics of a run's latest checkpoint on ``split``; writes metrics, meshes and a figure.

    Args:
        run_dir: the run folder (holds ``ckpt.pt`` and ``config.json``).
        data_dir: dataset folder; default: the run config's ``data_dir``.
        split: which split to evaluate.
        device_name: ``auto``, ``cpu`` or ``cuda``.
        chamfer_images: images used for the Chamfer distance (marching cubes is the slow part).
        examples: predicted meshes written as ``.obj`` and shown in the figure.
        batch_size: inference batch size.

    Raises:
        ConfigError: missing checkpoint, dataset or split.
    """
    ckpt_path = run_dir / checkpoint.CKPT_NAME
    if not ckpt_path.exists():
        raise ConfigError(f"no checkpoint in {run_dir}")
    cfg = json.loads((run_dir / "config.json").read_text())
    data_dir = Path(data_dir or cfg["data_dir"])
    if not (data_dir / split / "images.npy").exists():
        raise ConfigError(f"{data_dir} has no {split} split")
    manifest = json.loads((data_dir / "manifest.json").read_text())
    half_extent, frame = manifest["settings"]["half_extent"], manifest["settings"]["frame"]
    try:
        device = select_device(device_name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    model = checkpoint.load_model(ckpt_path, device)
    ds = SDFViews(data_dir, split)
    if len(ds) == 0:
        raise ConfigError(f"the {split} split of {data_dir} is empty")
    mean_grid = mean_sdf_grid(data_dir, "train")
    model_acc, base_acc = _Acc(), _Acc()
    preds: list[np.ndarray] = []
    keep = set(np.unique(np.linspace(0, len(ds) - 1, min(len(ds), chamfer_images)).astype(int)).tolist())
    with torch.no_grad():
        for b, (image, sdf) in enumerate(DataLoader(ds, batch_size=batch_size)):
            pred = model(image.to(device)).float().cpu()
            model_acc.add(pred, sdf)
            base_acc.add(mean_grid.expand_as(sdf), sdf)
            preds.extend(pred[i].numpy() if b * batch_size + i in keep else None for i in range(len(pred)))
    mesh_ids = json.loads((data_dir / split / "mesh_ids.json").read_text())
    poses = np.load(data_dir / split / "poses.npy")
    base_surface = grid_surface(mean_grid.numpy(), half_extent)
    cd_model, cd_base, failures, base_failures = [], [], 0, 0
    out_dir = run_dir / "predictions"
    out_dir.mkdir(exist_ok=True)
    shown: list[tuple[int, trimesh.Trimesh, trimesh.Trimesh | None]] = []
    ordered = sorted(keep)
    # Examples spread over the split (consecutive images are views of the same mesh).
    shown_idx = set(ordered[:: max(1, len(ordered) // max(1, examples))][:examples])
    for idx in ordered:
        gt = _gt_mesh(data_dir, mesh_ids[int(ds.view_mesh[idx])], poses[idx], frame)
        surface = grid_surface(preds[idx], half_extent)
        if surface is None:
            failures += 1
        else:
            cd_model.append(chamfer(surface, gt, seed=idx))
        if base_surface is None:
            base_failures += 1
        else:
            cd_base.append(chamfer(base_surface, gt, seed=idx))
        if idx in shown_idx:
            if surface is not None:
                surface.export(out_dir / f"pred_{idx:05d}.obj")
            gt.export(out_dir / f"gt_{idx:05d}.obj")
            shown.append((idx, gt, surface))
    m, base = model_acc.result(), base_acc.result()
    metrics: dict[str, Any] = {
        **m,
        "chamfer": float(np.mean(cd_model)) if cd_model else None,
        **{f"baseline_{k}": v for k, v in base.items()},
        "baseline_chamfer": float(np.mean(cd_base)) if cd_base else None,
        "chamfer_images": len(keep), "chamfer_failures": failures, "baseline_chamfer_failures": base_failures,
        "split": split, "images": len(ds), "step": int(checkpoint.load(ckpt_path)["step"]),
        "frame": frame, "grid": int(ds.sdf.shape[-1]), "half_extent": half_extent,
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    _figure(run_dir / "predictions.png", ds, shown)
    log(f"evaluate: sdf_mae {m['sdf_mae']:.4f} (baseline {base['sdf_mae']:.4f}), iou {m['iou']:.3f} "
        f"(baseline {base['iou']:.3f}), chamfer {metrics['chamfer']} "
        f"(baseline {metrics['baseline_chamfer']})")
    return metrics


_Shown = list[tuple[int, trimesh.Trimesh, trimesh.Trimesh | None]]


def _figure(path: Path, ds: SDFViews, shown: _Shown) -> None:
    """Input image | ground-truth surface | predicted surface, one row per example, seen from the camera."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not shown:
        return
    fig = plt.figure(figsize=(9, 3 * len(shown)))
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    for row, (idx, gt, pred) in enumerate(shown):
        image = ds[idx][0].permute(1, 2, 0).numpy() * std + mean
        ax = fig.add_subplot(len(shown), 3, 3 * row + 1)
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(f"input #{idx}")
        ax.axis("off")
        for col, (mesh, title) in enumerate(((gt, "ground truth"), (pred, "prediction")), start=2):
            ax3 = fig.add_subplot(len(shown), 3, 3 * row + col, projection="3d")
            if mesh is not None:
                v = mesh.vertices
                ax3.plot_trisurf(v[:, 0], v[:, 1], v[:, 2], triangles=mesh.faces, color="0.7", linewidth=0)
            lim = 0.6
            ax3.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim), title=title if mesh is not None
                    else f"{title}: no surface")
            ax3.view_init(elev=90, azim=-90)  # look down -z with x right, y up: the camera's own view
            ax3.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description="Evaluate a training run.")
    p.add_argument("--run", required=True, type=Path, help="run folder")
    p.add_argument("--data-dir", type=Path, help="dataset folder (default: the run's data_dir)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chamfer-images", type=int, default=64)
    p.add_argument("--examples", type=int, default=4)
    args = p.parse_args(argv)
    try:
        metrics = evaluate(
            args.run, args.data_dir, args.split, args.device, args.chamfer_images, args.examples
        )
    except ConfigError as exc:
        die(str(exc))
    print(json.dumps({k: metrics[k] for k in ("sdf_mae", "baseline_sdf_mae", "iou", "baseline_iou", "chamfer",
                                              "baseline_chamfer")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

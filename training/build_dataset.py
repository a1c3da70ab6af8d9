"""Build a dataset: meshes -> rendered views + exact SDF grids, split by mesh, as memory-mappable arrays.

Usage::

    python -m training.build_dataset --source procedural --out data/proc --images 10000
    python -m training.build_dataset --source modelnet:/data/ModelNet10 --out data/mn10 --views 8

Layout of ``--out``::

    manifest.json              counts, rejections (with reasons), rejection rate, split, settings
    items/<mesh_id>.npz        one finished mesh (the resume unit): views, depth, mask, SDF, poses, mesh
    items/<mesh_id>.rejected.json
    <split>/images.npy         (N, H, W, 3) uint8     N = images in the split
    <split>/masks.npy          (N, H, W) uint8
    <split>/depth.npy          (N, H, W) float16
    <split>/sdf.npy            (G, R, R, R) float16   G = N (view frame) or meshes (object frame)
    <split>/sdf_index.npy      (N,) int32             image -> row of sdf.npy
    <split>/view_mesh.npy      (N,) int32             image -> index into <split>/mesh_ids.json
    <split>/poses.npy          (N, 4, 4) float32      camera-to-world
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.dataset_settings import BuildSettings, ConfigError, from_dict
from training.gl import GLUnavailableError, setup_gl
from training.meshes import MeshRef, MeshRejectedError, list_source, load_ref
from training.pool import run_jobs
from training.util import atomic_write_json, die, log

SPLITS = ("train", "val", "test")
_RENDERER: Any = None  # one GL context per worker process, opened on first use


def assign_split(mesh_id: str, split_hint: str, val_fraction: float, test_fraction: float) -> str:
    """Split of a mesh, a pure function of its id: every view of a mesh lands in the same split.

    Args:
        mesh_id: the mesh's stable id.
        split_hint: ``"test"`` when the source fixes the test split.
        val_fraction: share of validation meshes.
        test_fraction: share of test meshes (ignored for sources with their own test split).
    """
    u = int(hashlib.sha256(mesh_id.encode()).hexdigest()[:12], 16) / float(16**12)
    if split_hint == "test":
        return "test"
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _rng_for(mesh_id: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(hashlib.sha256(mesh_id.encode()).hexdigest()[:15], 16)])


def process_mesh(ref: MeshRef, settings: BuildSettings, items_dir: str) -> dict[str, Any]:
    """Worker job: load one mesh, render its views, compute its SDF grids and save the item atomically.

    Returns:
        ``{"status": "ok", "repaired": bool, "views": int}`` or ``{"status": "rejected", "reason": str}``.
    """
    global _RENDERER
    from training.render import Renderer, sample_poses
    from training.sdf import sdf_grid

    try:
        mesh, repaired = load_ref(ref)
    except MeshRejectedError as exc:
        return {"status": "rejected", "reason": str(exc)}
    if _RENDERER is None:
        _RENDERER = Renderer(settings.render_settings())
    poses = sample_poses(settings.render_settings(), _rng_for(ref.mesh_id, settings.seed))
    rgb, depth, mask = _RENDERER.render(mesh, poses)
    if not mask.any(axis=(1, 2)).all():
        return {"status": "rejected", "reason": "a rendered view is empty"}
    if settings.frame == "view":
        grids = np.stack([sdf_grid(mesh, settings.grid, settings.half_extent, p[:3, :3]) for p in poses])
    else:
        grids = sdf_grid(mesh, settings.grid, settings.half_extent)[None]
    final = Path(items_dir) / f"{ref.mesh_id}.npz"
    tmp = final.with_suffix(".tmp.npz")
    np.savez(
        tmp, images=rgb, masks=mask.astype(np.uint8), depth=depth.astype(np.float16),
        sdf=grids.astype(np.float16), poses=poses.astype(np.float32),
        vertices=np.asarray(mesh.vertices, dtype=np.float32), faces=np.asarray(mesh.faces, dtype=np.int32),
    )
    tmp.replace(final)
    return {"status": "ok", "repaired": repaired, "views": len(poses)}


def _consolidate(out: Path, settings: BuildSettings, split_ids: dict[str, list[str]]) -> dict[str, Any]:
    """Write each split's arrays from the finished items, streaming into memory-mapped files."""
    info: dict[str, Any] = {}
    r, px, v = settings.grid, settings.resolution_px, settings.views
    for split in SPLITS:
        ids = sorted(split_ids.get(split, []))
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        n = len(ids) * v
        g = n if settings.frame == "view" else len(ids)
        arrays = {
            "images": ((n, px, px, 3), np.uint8), "masks": ((n, px, px), np.uint8),
            "depth": ((n, px, px), np.float16), "sdf": ((g, r, r, r), np.float16),
            "sdf_index": ((n,), np.int32), "view_mesh": ((n,), np.int32), "poses": ((n, 4, 4), np.float32),
        }
        mm = {k: np.lib.format.open_memmap(d / f"{k}.tmp.npy", mode="w+", dtype=t, shape=s)
              for k, (s, t) in arrays.items()}
        for m, mesh_id in enumerate(ids):
            with np.load(out / "items" / f"{mesh_id}.npz") as item:
                sl = slice(m * v, (m + 1) * v)
                for k in ("images", "masks", "depth", "poses"):
                    mm[k][sl] = item[k]
                if settings.frame == "view":
                    mm["sdf"][sl] = item["sdf"]
                    mm["sdf_index"][sl] = np.arange(sl.start, sl.stop)
                else:
                    mm["sdf"][m] = item["sdf"][0]
                    mm["sdf_index"][sl] = m
                mm["view_mesh"][sl] = m
        for k, arr in mm.items():
            arr.flush()
            del arr
            (d / f"{k}.tmp.npy").replace(d / f"{k}.npy")
        atomic_write_json(d / "mesh_ids.json", ids)
        info[split] = {"meshes": len(ids), "images": n}
    return info


def build(
    settings: BuildSettings, out: Path, progress: bool = True, retry_rejected: bool = False
) -> dict[str, Any]:
    """Build (or resume building) a dataset into ``out`` and write ``out/manifest.json``.

    Args:
        settings: what to build.
        out: output folder; finished items found there are kept (resume).
        progress: show a tqdm progress bar on stderr.
        retry_rejected: process meshes rejected by an earlier run again.

    Returns:
        The manifest.

    Raises:
        ConfigError: bad source, or ``out`` holds a build with different content settings.
    """
    from tqdm import tqdm

    try:
        refs = list_source(settings.source, settings.mesh_count, settings.seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:  # check the GL platform once here: one clear error instead of one rejection per mesh
        setup_gl(settings.platform)
    except GLUnavailableError as exc:
        raise ConfigError(str(exc)) from exc
    items = out / "items"
    items.mkdir(parents=True, exist_ok=True)
    key_file = out / "build_key.json"
    if key_file.exists() and json.loads(key_file.read_text()) != settings.content_key():
        raise ConfigError(f"{out} holds a build with different settings; use another --out")
    atomic_write_json(key_file, settings.content_key())

    def done(ref: MeshRef) -> bool:
        if (items / f"{ref.mesh_id}.npz").exists():
            return True
        return not retry_rejected and (items / f"{ref.mesh_id}.rejected.json").exists()

    todo = [r for r in refs if not done(r)]
    log(f"build: {len(refs)} meshes, {len(refs) - len(todo)} already done, {len(todo)} to process")
    start = time.monotonic()
    jobs = [(r.mesh_id, (r, settings, str(items))) for r in todo]
    by_id = {r.mesh_id: r for r in refs}
    bar = tqdm(total=len(jobs), disable=not progress, file=sys.stderr, unit="mesh")
    for result in run_jobs(process_mesh, jobs, settings.workers, settings.timeout_s):
        if result.ok and result.value["status"] == "ok":
            (items / f"{result.key}.rejected.json").unlink(missing_ok=True)
            if result.value["repaired"]:
                atomic_write_json(items / f"{result.key}.repaired.json", {"repaired": True})
        else:
            reason = result.value["reason"] if result.ok else f"error: {result.error}"
            atomic_write_json(items / f"{result.key}.rejected.json",
                              {"mesh_id": result.key, "path": by_id[result.key].path, "reason": reason})
        bar.update(1)
    bar.close()
    elapsed = time.monotonic() - start

    accepted = [r for r in refs if (items / f"{r.mesh_id}.npz").exists()]
    rejected = [json.loads((items / f"{r.mesh_id}.rejected.json").read_text())
                for r in refs if r not in accepted and (items / f"{r.mesh_id}.rejected.json").exists()]
    split_ids: dict[str, list[str]] = {s: [] for s in SPLITS}
    for r in accepted:
        split = assign_split(r.mesh_id, r.split_hint, settings.val_fraction, settings.test_fraction)
        split_ids[split].append(r.mesh_id)
    split_info = _consolidate(out, settings, split_ids)
    n_images = sum(s["images"] for s in split_info.values())
    processed = len(todo)
    manifest = {
        "created_at": datetime.now(UTC).isoformat(),
        "meshes_total": len(refs),
        "meshes_accepted": len(accepted),
        "meshes_rejected": len(rejected),
        "meshes_repaired": sum((items / f"{r.mesh_id}.repaired.json").exists() for r in accepted),
        "rejection_rate": round(len(rejected) / max(1, len(refs)), 4),
        "images": n_images,
        "rejections": rejected,
        "splits": split_info,
        "settings": {**settings.__dict__},
        "build_seconds": round(elapsed, 2),
        "meshes_processed_this_run": processed,
        "meshes_per_s": round(processed / elapsed, 3) if processed and elapsed > 0 else None,
        "images_per_s": round(processed * settings.views / elapsed, 3) if processed and elapsed > 0 else None,
    }
    atomic_write_json(out / "manifest.json", manifest)
    log(f"build: {len(accepted)} accepted, {len(rejected)} rejected "
        f"({100 * manifest['rejection_rate']:.1f} %), {n_images} images in {elapsed:.1f} s")
    return manifest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.build_dataset", description=__doc__.split("\n")[0])
    p.add_argument("--source", help="procedural | modelnet:PATH | shapenet:PATH | folder:PATH")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--config", type=Path, help="JSON config; its 'dataset' section gives defaults")
    p.add_argument("--images", type=int, help="target image count (default 10000)")
    p.add_argument("--meshes", type=int, help="mesh count (overrides --images)")
    p.add_argument("--views", type=int, help="views per mesh")
    p.add_argument("--resolution-px", type=int, dest="resolution_px")
    p.add_argument("--yfov-deg", type=float, dest="yfov_deg")
    p.add_argument("--grid", type=int, help="SDF grid side (32 default, 64 option)")
    p.add_argument("--frame", choices=["view", "object"])
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--timeout-s", type=float, dest="timeout_s")
    p.add_argument("--platform", choices=["egl", "osmesa"])
    p.add_argument("--retry-rejected", action="store_true", help="process earlier rejections again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = _parser().parse_args(argv)
    try:
        data: dict[str, Any] = {}
        if args.config:
            from training.util import read_json_config

            data = dict(read_json_config(args.config).get("dataset", {}))
        for name in ("source", "images", "meshes", "views", "resolution_px", "yfov_deg", "grid", "frame",
                     "seed", "workers", "timeout_s", "platform"):
            if getattr(args, name) is not None:
                data[name] = getattr(args, name)
        settings = from_dict(BuildSettings, data, "dataset")
        build(settings, args.out, progress=not args.no_progress, retry_rejected=args.retry_rejected)
    except ConfigError as exc:
        die(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dataset-builder throughput: meshes/s and images/s, with a per-stage breakdown.

    python bench/data_speed.py [--config configs/default.json] [--meshes 24] [--workers 2]

Stage timings (load+repair+normalise, render, SDF) come from one process on a few meshes; the throughput
comes from the real builder (parallel, with its pool and storage) into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "default.json")
    p.add_argument("--meshes", type=int, default=24, help="meshes for the builder throughput")
    p.add_argument("--stage-meshes", type=int, default=4, help="meshes for the per-stage breakdown")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--source", default="procedural")
    args = p.parse_args()

    import numpy as np

    from training.build_dataset import build
    from training.dataset_settings import BuildSettings, ConfigError, from_dict
    from training.meshes import list_source, load_ref
    from training.render import Renderer, sample_poses
    from training.sdf import sdf_grid

    try:
        data = dict(json.loads(args.config.read_text()).get("dataset", {}))
        data.update(source=args.source, meshes=args.meshes, workers=args.workers)
        settings = from_dict(BuildSettings, data, "dataset")
    except (OSError, json.JSONDecodeError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stages = {"load_s": 0.0, "render_s": 0.0, "sdf_s": 0.0}
    renderer = Renderer(settings.render_settings())
    refs = list_source(settings.source, args.stage_meshes, settings.seed + 1)
    for i, ref in enumerate(refs):
        t0 = time.perf_counter()
        mesh, _ = load_ref(ref)
        t1 = time.perf_counter()
        poses = sample_poses(settings.render_settings(), np.random.default_rng(i))
        renderer.render(mesh, poses)
        t2 = time.perf_counter()
        for pose in poses if settings.frame == "view" else poses[:1]:
            rotation = pose[:3, :3] if settings.frame == "view" else None
            sdf_grid(mesh, settings.grid, settings.half_extent, rotation)
        t3 = time.perf_counter()
        if i:  # the first mesh pays the GL context and import costs
            stages["load_s"] += t1 - t0
            stages["render_s"] += t2 - t1
            stages["sdf_s"] += t3 - t2
    renderer.close()
    n = max(1, len(refs) - 1)
    print(
        f"per mesh, one process ({settings.views} views, {settings.resolution_px} px, {settings.grid}^3 "
        f"{settings.frame}-frame SDF): load {1000 * stages['load_s'] / n:.0f} ms, "
        f"render {1000 * stages['render_s'] / n:.0f} ms, SDF {1000 * stages['sdf_s'] / n:.0f} ms"
    )

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = build(settings, Path(tmp) / "data", progress=False)
        wall = time.perf_counter() - t0
    meshes, images = manifest["meshes_accepted"], manifest["images"]
    print(
        f"builder, {settings.workers} workers: {meshes} meshes, {images} images in {wall:.1f} s wall "
        f"(incl. worker start-up and storage) -> {meshes / wall:.2f} meshes/s, "
        f"{images / wall:.2f} images/s; "
        f"pool only: {manifest['meshes_per_s']} meshes/s, {manifest['images_per_s']} images/s"
    )
    print(
        json.dumps(
            {
                "meshes": meshes,
                "images": images,
                "wall_s": wall,
                "meshes_per_s": meshes / wall,
                "images_per_s": images / wall,
                "stage_ms_per_mesh": {k: 1000 * v / n for k, v in stages.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

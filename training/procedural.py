"""Procedural meshes that need no download: primitives and boolean combinations through manifold3d.

Every mesh is a pure function of ``(seed, index)``, so a build is reproducible and each worker process can
generate its own meshes. manifold3d guarantees watertight (manifold) output for booleans.
"""

from __future__ import annotations

import numpy as np
import trimesh
from manifold3d import CrossSection, Manifold

PRIMITIVES = ("box", "sphere", "cylinder", "cone", "capsule", "torus")
_SEGMENTS = 48  # circle resolution: fine enough that the 32^3-64^3 SDF grid cannot see the facets much


def _primitive(kind: str, rng: np.random.Generator) -> Manifold:
    """One primitive centred at the origin with random proportions (about unit size)."""
    if kind == "box":
        return Manifold.cube(rng.uniform(0.3, 1.0, size=3).tolist(), True)
    if kind == "sphere":
        r = rng.uniform(0.25, 0.5)
        return Manifold.sphere(r, _SEGMENTS).scale(rng.uniform(0.6, 1.0, size=3).tolist())
    if kind == "cylinder":
        return Manifold.cylinder(rng.uniform(0.3, 1.0), rng.uniform(0.12, 0.45), -1.0, _SEGMENTS, True)
    if kind == "cone":
        return Manifold.cylinder(rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.5), 0.0, _SEGMENTS, True)
    if kind == "capsule":
        r, h = rng.uniform(0.12, 0.3), rng.uniform(0.1, 0.6)
        ends = [Manifold.sphere(r, _SEGMENTS).translate([0, 0, z]) for z in (-h / 2, h / 2)]
        return Manifold.batch_hull(ends)
    if kind == "torus":
        major = rng.uniform(0.25, 0.4)
        minor = rng.uniform(0.06, min(0.18, major - 0.03))
        return Manifold.revolve(CrossSection.circle(minor, _SEGMENTS).translate([major, 0]), _SEGMENTS)
    raise ValueError(f"unknown primitive {kind!r}")


def _random_rotation_deg(rng: np.random.Generator) -> list[float]:
    return rng.uniform(0.0, 360.0, size=3).tolist()


def generate(seed: int, index: int, max_parts: int = 3) -> trimesh.Trimesh:
    """Generate procedural mesh number ``index`` of the family ``seed``.

    With ``max_parts`` 3, 40 % of the meshes are single primitives and the rest combine 2-3 primitives, each
    with its own random scale, rotation and offset, by union or difference. Differences that would remove most
    of the shape fall back to the shape before, so every index yields a mesh.

    Args:
        seed: family seed.
        index: mesh number within the family.
        max_parts: at most this many primitives per mesh (1 to 3); 1 gives single primitives only.

    Returns:
        A watertight triangle mesh (not yet normalised).
    """
    rng = np.random.default_rng([seed, index])
    n_parts = min(max_parts, int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])))
    parts = []
    for _ in range(n_parts):
        part = _primitive(str(rng.choice(PRIMITIVES)), rng)
        part = part.scale([float(rng.uniform(0.7, 1.3))] * 3).rotate(_random_rotation_deg(rng))
        parts.append(part.translate(rng.uniform(-0.25, 0.25, size=3).tolist()))
    shape = parts[0]
    for part in parts[1:]:
        # Differences only with a smaller cutter, so the result keeps a recognisable body.
        if rng.random() < 0.35:
            candidate = shape - part.scale([0.7, 0.7, 0.7])
            if not candidate.is_empty() and candidate.volume() > 0.2 * shape.volume():
                shape = candidate
        else:
            shape = shape + part
    shape = shape.rotate(_random_rotation_deg(rng))
    mesh = shape.to_mesh()
    return trimesh.Trimesh(
        np.asarray(mesh.vert_properties)[:, :3].astype(np.float64),
        np.asarray(mesh.tri_verts).astype(np.int64),
        process=False,
    )

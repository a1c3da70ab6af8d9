"""Exact signed distance fields on a regular grid, negative inside.

Method: libigl's ``signed_distance`` with the pseudonormal sign (Baerentzen & Aanaes). The distance is the
exact point-to-triangle distance through an AABB tree, and the pseudonormal sign is exact for watertight,
consistently oriented meshes, which is all the builder lets through. It is about 3x faster than the
winding-number sign here and far faster than trimesh's (which needs rtree); mesh_to_sdf is approximate.
"""

from __future__ import annotations

import igl
import numpy as np
import trimesh

# Half-extent of the grid cube in each frame. In the object frame the mesh fills [-0.5, 0.5]^3; in the view
# frame any rotation of it must fit, i.e. a sphere of radius sqrt(3)/2 = 0.866. A margin keeps the surface
# off the grid boundary so marching cubes closes it.
DEFAULT_HALF_EXTENT = {"object": 0.55, "view": 0.9}
_CHUNK = 65536  # points per igl call: bounds the temporary arrays without measurable overhead


def grid_points(resolution: int, half_extent: float) -> np.ndarray:
    """Cell-vertex coordinates of a ``resolution^3`` grid spanning ``[-half_extent, half_extent]^3``.

    Returns:
        ``(resolution**3, 3)`` float64, ordered so that ``reshape(resolution, resolution, resolution)``
        indexes ``[ix, iy, iz]``.
    """
    axis = np.linspace(-half_extent, half_extent, resolution)
    gx, gy, gz = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)


def signed_distance(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Exact signed distance from ``points`` ``(N, 3)`` to a watertight ``mesh``; negative inside."""
    verts = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int64)
    out = np.empty(len(points), dtype=np.float64)
    for start in range(0, len(points), _CHUNK):
        chunk = np.ascontiguousarray(points[start : start + _CHUNK], dtype=np.float64)
        dist, *_ = igl.signed_distance(
            chunk, verts, faces, sign_type=igl.SignedDistanceType.SIGNED_DISTANCE_TYPE_PSEUDONORMAL
        )
        out[start : start + len(chunk)] = dist
    return out


def sdf_grid(
    mesh: trimesh.Trimesh, resolution: int, half_extent: float, rotation: np.ndarray | None = None
) -> np.ndarray:
    """SDF of ``mesh`` sampled on a grid.

    Args:
        mesh: watertight mesh.
        resolution: grid side (32 by default in the builder, 64 as an option).
        half_extent: the grid spans ``[-half_extent, half_extent]^3``.
        rotation: for a view-frame grid, the camera-to-world rotation ``(3, 3)``: grid point ``p`` in camera
            axes sits at ``rotation @ p`` in the mesh frame. ``None`` samples in the mesh frame.

    Returns:
        ``(resolution, resolution, resolution)`` float32.
    """
    points = grid_points(resolution, half_extent)
    if rotation is not None:
        points = points @ np.asarray(rotation, dtype=np.float64).T
    return signed_distance(mesh, points).reshape(resolution, resolution, resolution).astype(np.float32)

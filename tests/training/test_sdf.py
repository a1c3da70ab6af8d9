"""The ground-truth SDF against analytic shapes.

libigl's distance is exact *to the mesh*. A triangulated sphere or torus is not the analytic surface, so for
those the tolerance is the tessellation error: the Hausdorff distance between the mesh and the true surface
bounds how far the two SDFs can differ (the distance function is 1-Lipschitz in the surface). The box is
represented exactly by its triangles, so it is checked to float precision.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
trimesh = pytest.importorskip("trimesh")
pytest.importorskip("igl")

from training.sdf import grid_points, sdf_grid, signed_distance  # noqa: E402

pytestmark = pytest.mark.training


def _box_sdf(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)


def _torus_sdf(p: np.ndarray, major: float, minor: float) -> np.ndarray:
    ring = np.linalg.norm(p[:, :2], axis=1) - major
    return np.sqrt(ring**2 + p[:, 2] ** 2) - minor


def test_grid_layout():
    pts = grid_points(4, 0.5)
    grid = pts.reshape(4, 4, 4, 3)
    assert grid[3, 0, 0].tolist() == [0.5, -0.5, -0.5]
    assert grid[0, 3, 0].tolist() == [-0.5, 0.5, -0.5]
    assert grid[0, 0, 3].tolist() == [-0.5, -0.5, 0.5]


def test_box_exact():
    half = np.array([0.3, 0.2, 0.1])
    box = trimesh.creation.box(extents=2 * half)
    pts = grid_points(16, 0.55)
    assert np.abs(signed_distance(box, pts) - _box_sdf(pts, half)).max() < 1e-9


def test_sphere_within_tessellation_error():
    radius = 0.4
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    # Vertices lie on the sphere; the farthest the faces get from it is at their planes' closest point.
    plane_dist = np.abs(np.einsum("ij,ij->i", sphere.face_normals, sphere.triangles[:, 0]))
    tessellation_error = radius - plane_dist.min()
    assert tessellation_error < 1e-3  # fine enough for the 1e-3 target to mean something
    pts = grid_points(16, 0.55)
    err = np.abs(signed_distance(sphere, pts) - (np.linalg.norm(pts, axis=1) - radius))
    assert err.max() <= tessellation_error + 1e-9
    assert err.max() < 1e-3


def test_torus_within_tessellation_error():
    major, minor = 0.3, 0.1
    torus = trimesh.creation.torus(
        major_radius=major, minor_radius=minor, major_sections=256, minor_sections=128
    )
    # Bound of the tessellation error, measured: the analytic distance of dense points on the faces.
    samples, _ = trimesh.sample.sample_surface_even(torus, 200_000, seed=0)
    tessellation_error = np.abs(_torus_sdf(samples, major, minor)).max()
    assert tessellation_error < 1e-3
    pts = grid_points(16, 0.55)
    err = np.abs(signed_distance(torus, pts) - _torus_sdf(pts, major, minor))
    assert err.max() < 1e-3
    inside = _torus_sdf(pts, major, minor) < -1e-3
    assert (signed_distance(torus, pts[inside]) < 0).all()  # negative inside


def test_view_frame_grid_is_the_rotated_object_grid():
    half = np.array([0.4, 0.1, 0.2])
    box = trimesh.creation.box(extents=2 * half)
    # Camera axes rotated 90 degrees about z: camera x is the object's y, camera y is the object's -x.
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    grid = sdf_grid(box, 16, 0.55, rotation=rot)
    expected = _box_sdf(grid_points(16, 0.55), half[[1, 0, 2]]).reshape(16, 16, 16)
    assert grid.dtype == np.float32
    assert np.abs(grid - expected).max() < 1e-6

"""Headless rendering: image sizes, non-empty content, depth/mask consistency, platform errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
trimesh = pytest.importorskip("trimesh")
pytest.importorskip("pyrender")

from training.gl import GLUnavailableError, setup_gl  # noqa: E402
from training.render import Renderer, RenderSettings, look_at, sample_poses  # noqa: E402

pytestmark = pytest.mark.training


def test_renders_non_empty_views_of_the_right_size():
    settings = RenderSettings(resolution_px=24, views=3)
    poses = sample_poses(settings, np.random.default_rng(0))
    renderer = Renderer(settings)
    try:
        rgb, depth, mask = renderer.render(trimesh.creation.box(extents=(1.0, 0.6, 0.4)), poses)
    finally:
        renderer.close()
    assert rgb.shape == (3, 24, 24, 3) and rgb.dtype == np.uint8
    assert depth.shape == mask.shape == (3, 24, 24)
    for v in range(3):
        assert 0 < mask[v].sum() < 24 * 24  # the object is in view and does not fill the frame
        assert rgb[v][mask[v]].max() > 0  # lit
        # Black background; edge pixels may carry a little colour from multisample anti-aliasing.
        assert (rgb[v][~mask[v]].max(axis=1) == 0).mean() > 0.95
        assert (depth[v][mask[v]] > 0).all()


def test_camera_poses_on_the_sphere_look_at_the_origin():
    settings = RenderSettings(views=16, elevation_deg=(-10.0, 40.0))
    poses = sample_poses(settings, np.random.default_rng(1))
    eyes = poses[:, :3, 3]
    assert np.allclose(np.linalg.norm(eyes, axis=1), settings.camera_distance())
    elevation = np.degrees(np.arcsin(eyes[:, 1] / settings.camera_distance()))
    assert (elevation >= -10.0 - 1e-9).all() and (elevation <= 40.0 + 1e-9).all()
    for pose in poses:  # the camera looks down its -z axis at the origin
        assert np.allclose(-pose[:3, 2], -pose[:3, 3] / np.linalg.norm(pose[:3, 3]))
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.allclose(look_at(np.array([0, 3.0, 0]), np.zeros(3), np.array([0, 1.0, 0]))[:3, 2], [0, 1, 0])


def test_unknown_platform_is_a_clear_error():
    with pytest.raises(GLUnavailableError, match="unknown OpenGL platform"):
        setup_gl("x11")


def test_missing_system_library_names_the_package(monkeypatch):
    import ctypes.util

    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == "EGL" else real(name))
    with pytest.raises(GLUnavailableError, match="apt-get install -y libegl1 libegl-mesa0"):
        setup_gl("egl")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == "OSMesa" else real(name))
    with pytest.raises(GLUnavailableError, match="libosmesa6"):
        setup_gl("osmesa")

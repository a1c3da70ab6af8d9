"""Headless rendering with pyrender: RGB, depth and mask from viewpoints on a sphere around the object.

Call :func:`training.gl.setup_gl` (done by :class:`Renderer`) before anything imports OpenGL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from training.gl import setup_gl

# Radius of the sphere that holds any rotation of a mesh normalised to the unit cube: sqrt(3) / 2.
OBJECT_RADIUS = math.sqrt(3.0) / 2.0


@dataclass(frozen=True)
class RenderSettings:
    """How views are rendered.

    Attributes:
        resolution_px: square image side.
        yfov_deg: vertical field of view.
        views: viewpoints per mesh.
        elevation_deg: (min, max) camera elevation above the equator.
        light_intensity: directional light (attached to the camera) intensity.
        ambient: ambient light level in [0, 1].
        color: base colour of the object, RGB in [0, 1].
        platform: headless OpenGL platform, ``"egl"`` or ``"osmesa"``.
    """

    resolution_px: int = 64
    yfov_deg: float = 40.0
    views: int = 8
    elevation_deg: tuple[float, float] = (-30.0, 60.0)
    light_intensity: float = 3.0
    ambient: float = 0.3
    color: tuple[float, float, float] = (0.7, 0.7, 0.75)
    platform: str = "egl"

    def camera_distance(self) -> float:
        """Distance at which the whole object sphere fits in the field of view, with a 5 % margin."""
        return 1.05 * OBJECT_RADIUS / math.sin(math.radians(self.yfov_deg) / 2.0)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world pose (OpenGL convention: the camera looks down its -z axis, y is up)."""
    z = eye - target
    z = z / np.linalg.norm(z)
    if abs(float(np.dot(z, up))) > 0.999:  # looking straight along `up`: any perpendicular will do
        up = np.array([1.0, 0.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def sample_poses(settings: RenderSettings, rng: np.random.Generator) -> np.ndarray:
    """Draw ``settings.views`` camera poses uniformly in azimuth and in area between the elevation limits.

    Returns:
        ``(views, 4, 4)`` camera-to-world matrices.
    """
    lo, hi = (math.sin(math.radians(e)) for e in settings.elevation_deg)
    dist = settings.camera_distance()
    poses = []
    for _ in range(settings.views):
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        sin_elev = rng.uniform(lo, hi)  # uniform in sin(elevation) = uniform in area on the sphere
        cos_elev = math.sqrt(max(0.0, 1.0 - sin_elev**2))
        eye = dist * np.array([cos_elev * math.cos(azimuth), sin_elev, cos_elev * math.sin(azimuth)])
        poses.append(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])))
    return np.stack(poses)


class Renderer:
    """An offscreen renderer kept open across meshes (creating a GL context costs about half a second)."""

    def __init__(self, settings: RenderSettings) -> None:
        """Open the GL context.

        Args:
            settings: resolution, camera and lighting.

        Raises:
            training.gl.GLUnavailableError: the platform cannot work here.
        """
        setup_gl(settings.platform)
        import pyrender  # after setup_gl: the platform is read at import

        self._pyrender = pyrender
        self.settings = settings
        self._renderer = pyrender.OffscreenRenderer(settings.resolution_px, settings.resolution_px)

    def render(self, mesh: trimesh.Trimesh, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render ``mesh`` from each pose.

        Args:
            mesh: the normalised mesh.
            poses: ``(V, 4, 4)`` camera-to-world matrices.

        Returns:
            ``rgb`` ``(V, H, W, 3)`` uint8 on a black background, ``depth`` ``(V, H, W)`` float32 (0 where
            empty) and ``mask`` ``(V, H, W)`` bool.
        """
        pr, s = self._pyrender, self.settings
        material = pr.MetallicRoughnessMaterial(baseColorFactor=[*s.color, 1.0], metallicFactor=0.1,
                                                roughnessFactor=0.7)
        scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[s.ambient] * 3)
        scene.add(pr.Mesh.from_trimesh(mesh, material=material, smooth=False))
        camera = scene.add(pr.PerspectiveCamera(yfov=math.radians(s.yfov_deg), znear=0.05, zfar=20.0))
        light = scene.add(pr.DirectionalLight(color=np.ones(3), intensity=s.light_intensity))
        rgbs, depths = [], []
        for pose in poses:
            scene.set_pose(camera, pose)
            scene.set_pose(light, pose)
            rgb, depth = self._renderer.render(scene)
            rgbs.append(rgb[..., :3])
            depths.append(depth)
        depth_arr = np.stack(depths).astype(np.float32)
        return np.stack(rgbs).astype(np.uint8), depth_arr, depth_arr > 0

    def close(self) -> None:
        """Release the GL context."""
        self._renderer.delete()

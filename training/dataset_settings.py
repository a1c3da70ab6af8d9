"""Settings of a dataset build, validated; shared by the builder, the configs and the smoke run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from training.render import RenderSettings
from training.sdf import DEFAULT_HALF_EXTENT


class ConfigError(ValueError):
    """A configuration or command-line value is invalid; the message is shown to the user as one line."""


@dataclass
class BuildSettings:
    """Everything that determines the content of a dataset build (saved in its manifest).

    Attributes:
        source: ``procedural``, ``modelnet:PATH``, ``shapenet:PATH`` or ``folder:PATH``.
        images: target number of images; meshes = ceil(images / views) unless ``meshes`` is set.
        meshes: number of meshes (0: derived from ``images``); for file sources, the most to take.
        views: viewpoints (images) per mesh.
        resolution_px: image side.
        yfov_deg: camera vertical field of view.
        elevation_deg: camera elevation range.
        light_intensity: directional light intensity.
        ambient: ambient light.
        grid: SDF grid side (32 default, 64 option).
        frame: ``"view"`` (SDF grid in camera axes, one per image: well posed for arbitrarily oriented
            objects) or ``"object"`` (one grid per mesh in the normalised frame: for aligned datasets).
        half_extent: grid half-size; 0 picks the frame's default (0.9 view, 0.55 object).
        val_fraction: share of meshes in validation.
        test_fraction: share of meshes in test (ModelNet's own test folders are always test).
        seed: procedural and sampling seed.
        workers: builder processes.
        timeout_s: per-mesh deadline.
        platform: headless GL platform (``egl`` or ``osmesa``).
    """

    source: str = "procedural"
    images: int = 10000
    meshes: int = 0
    views: int = 8
    resolution_px: int = 128
    yfov_deg: float = 40.0
    elevation_deg: list[float] = field(default_factory=lambda: [-30.0, 60.0])
    light_intensity: float = 3.0
    ambient: float = 0.3
    grid: int = 32
    frame: str = "view"
    half_extent: float = 0.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    workers: int = 2
    timeout_s: float = 120.0
    platform: str = "egl"

    def __post_init__(self) -> None:
        """Validate; raise :class:`ConfigError` with a readable message."""
        checks = [
            (self.images >= 1 or self.meshes >= 1, "images or meshes must be positive"),
            (self.meshes >= 0, "meshes must be >= 0"),
            (self.views >= 1, "views must be >= 1"),
            (8 <= self.resolution_px <= 1024, "resolution_px must be within 8..1024"),
            (1.0 <= self.yfov_deg <= 150.0, "yfov_deg must be within 1..150"),
            (len(self.elevation_deg) == 2 and -90 <= self.elevation_deg[0] <= self.elevation_deg[1] <= 90,
             "elevation_deg must be [min, max] within -90..90"),
            (self.grid >= 8 and self.grid % 4 == 0 and (self.grid // 4) & (self.grid // 4 - 1) == 0,
             "grid must be 4 times a power of two (8, 16, 32, 64, 128)"),
            (self.frame in DEFAULT_HALF_EXTENT, "frame must be 'view' or 'object'"),
            (self.half_extent >= 0, "half_extent must be >= 0"),
            (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
             and self.val_fraction + self.test_fraction < 1, "val_fraction + test_fraction must be < 1"),
            (self.workers >= 1, "workers must be >= 1"),
            (self.timeout_s > 0, "timeout_s must be > 0"),
            (self.platform in ("egl", "osmesa"), "platform must be 'egl' or 'osmesa'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"dataset: {message}")
        if self.half_extent == 0:
            self.half_extent = DEFAULT_HALF_EXTENT[self.frame]

    @property
    def mesh_count(self) -> int:
        """Meshes to generate or take from the source."""
        return self.meshes or -(-self.images // self.views)

    def render_settings(self) -> RenderSettings:
        """The renderer's view of these settings."""
        return RenderSettings(
            resolution_px=self.resolution_px, yfov_deg=self.yfov_deg, views=self.views,
            elevation_deg=(float(self.elevation_deg[0]), float(self.elevation_deg[1])),
            light_intensity=self.light_intensity, ambient=self.ambient, platform=self.platform,
        )

    def content_key(self) -> dict[str, Any]:
        """The settings that change item content: a resumed build must match them."""
        d = dataclasses.asdict(self)
        for k in ("workers", "timeout_s", "images", "meshes", "val_fraction", "test_fraction", "platform"):
            d.pop(k)
        return d


def from_dict(cls: type, data: dict[str, Any], section: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a JSON object")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(unknown)}")
    for key, value in data.items():
        default = names[key].default
        if default is dataclasses.MISSING:
            default = names[key].default_factory()  # type: ignore[misc]
        if default is None or value is None:
            continue
        expected = float if isinstance(default, float) else type(default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if isinstance(value, bool) and expected is not bool:
            ok = False
        if not ok:
            raise ConfigError(f"{section}: {key} must be {expected.__name__}, got {type(value).__name__}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from exc

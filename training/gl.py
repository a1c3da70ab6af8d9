"""Headless OpenGL set-up for pyrender: platform choice, numpy shim, clear errors.

PyOpenGL reads ``PYOPENGL_PLATFORM`` once, at its first import, so :func:`setup_gl` must run before anything
imports ``OpenGL`` or ``pyrender``. Every module of ours that renders calls it first.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

import numpy as np

PLATFORMS = ("egl", "osmesa")

# The shared library each platform needs, and the Debian package that ships it.
_REQUIRED_LIBS = {
    "egl": [("EGL", "libegl1 libegl-mesa0"), ("GL", "libgl1 libgl1-mesa-dri")],
    "osmesa": [("OSMesa", "libosmesa6")],
}


class GLUnavailableError(RuntimeError):
    """The chosen OpenGL platform cannot work on this machine (missing system library, wrong PyOpenGL)."""


def _apply_numpy_shim() -> None:
    # pyrender 0.1.45 still uses np.infty, which numpy 2 removed.
    if not hasattr(np, "infty"):
        np.infty = np.inf  # type: ignore[attr-defined]


def setup_gl(platform: str | None = None) -> str:
    """Choose the headless OpenGL platform and check its system libraries.

    Args:
        platform: ``"egl"`` or ``"osmesa"``; ``None`` keeps an existing ``PYOPENGL_PLATFORM`` or picks
            ``"egl"``, which works with pyrender's pinned PyOpenGL on Mesa's software renderer and on NVIDIA.

    Returns:
        The platform in use.

    Raises:
        GLUnavailableError: unknown platform, OpenGL already imported with another platform, or a missing
            system library (the message names the Debian package to install).
    """
    chosen = (platform or os.environ.get("PYOPENGL_PLATFORM") or "egl").lower()
    if chosen not in PLATFORMS:
        raise GLUnavailableError(f"unknown OpenGL platform {chosen!r}; choose one of {', '.join(PLATFORMS)}")
    for lib, package in _REQUIRED_LIBS[chosen]:
        if ctypes.util.find_library(lib) is None:
            raise GLUnavailableError(
                f"headless rendering with {chosen} needs the system library lib{lib}: "
                f"apt-get install -y {package}"
            )
    if chosen == "osmesa":
        import importlib.metadata

        version = importlib.metadata.version("PyOpenGL")
        if tuple(int(p) for p in version.split(".")[:3] if p.isdigit()) < (3, 1, 7):
            raise GLUnavailableError(
                f"OSMesa needs PyOpenGL >= 3.1.7 (installed: {version}); "
                "use platform 'egl' or `pip install --no-deps 'PyOpenGL>=3.1.7'`"
            )
    current = os.environ.get("PYOPENGL_PLATFORM")
    if "OpenGL" in sys.modules and current and current != chosen:
        raise GLUnavailableError(
            f"OpenGL was already imported with platform {current!r}; cannot switch to {chosen!r} in-process"
        )
    os.environ["PYOPENGL_PLATFORM"] = chosen
    _apply_numpy_shim()
    return chosen

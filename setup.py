"""Builds the rules tagger's compiled core (``daemon/tagging/_core.pyx``); the rest is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler, no Python headers), pip still installs
aced and the tagger runs its pure-Python pipeline, which gives the same tags, only slower.
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - pyproject's build requirements bring Cython
    ext_modules = []
else:
    ext_modules = cythonize(
        [
            Extension(
                "daemon.tagging._core",
                ["daemon/tagging/_core.pyx"],
                # the steps must compute every float exactly as the Python reference does: no fused
                # multiply-add, no fast-math reordering
                extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
                optional=True,
            )
        ],
        language_level=3,
    )

setup(ext_modules=ext_modules)

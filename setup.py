"""Builds the C extensions, gendl_jax.transport._netsimplex (exact optimal transport by our network
simplex) and gendl_jax.metrics._persistence (H1 persistence pairs of the Geometry Score), plain
CPython API: no numpy headers needed. All other metadata lives in pyproject.toml.

``pip install .`` compiles it into the wheel; ``pip install -e .`` compiles it next to its source.
"""

import sys

from setuptools import Extension, setup

# -fopenmp-simd lets gcc/clang vectorise the min-reduction of the pricing loop (no OpenMP runtime).
flags = [] if sys.platform == "win32" else ["-O3", "-fopenmp-simd"]

setup(
    ext_modules=[
        Extension(
            "gendl_jax.transport._netsimplex",
            sources=["gendl_jax/transport/_netsimplex.c"],
            extra_compile_args=flags,
        ),
        Extension(
            "gendl_jax.metrics._persistence",
            sources=["gendl_jax/metrics/_persistence.c"],
            extra_compile_args=flags,
        ),
    ]
)

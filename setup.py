"""Declares the compiled core; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("fastfedmsg._core", ["fastfedmsg/_core.pyx"], libraries=["dl"]),
            # Tight send and receive loops for the benchmarks (fastfedmsg._loops).
            Extension("fastfedmsg._loops", ["fastfedmsg/_loops.pyx"], libraries=["dl"]),
        ],
        compiler_directives={"language_level": "3"},
    ),
)

"""Declares the compiled core; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("fastfedmsg._core", ["fastfedmsg/_core.pyx"], libraries=["dl"])],
        compiler_directives={"language_level": "3"},
    ),
)

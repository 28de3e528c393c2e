"""The package refuses to run without its compiled core, and says how to build it."""

import os
import pathlib
import shutil
import subprocess
import sys

import fastfedmsg


def test_import_without_the_built_core_says_how_to_build_it(tmp_path):
    source = pathlib.Path(fastfedmsg.__file__).parent
    unbuilt = tmp_path / "fastfedmsg"
    shutil.copytree(source, unbuilt, ignore=shutil.ignore_patterns("*.so", "__pycache__"))

    # Unlike every other child of the tests, this one must find the copy in
    # its working folder first.  An editable install's finder would hand it
    # the built core of the checkout, so the child drops that finder.
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    code = ("import sys\n"
            "sys.meta_path[:] = [finder for finder in sys.meta_path\n"
            "                    if not getattr(finder, '__module__', '').startswith('__editable__')]\n"
            "import fastfedmsg\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env=env)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: fastfedmsg's compiled core")
    assert "pip install ." in last_line and "build_ext --inplace" in last_line
    assert str(unbuilt) in last_line


def test_one_libzmq_is_mapped_after_publishing(endpoint_config):
    # A second libzmq in the process would make every send fail (ENOTSOCK).
    fastfedmsg.init(name=endpoint_config["name"])
    fastfedmsg.publish(topic="t", msg={}, modname="m")

    with open("/proc/self/maps") as maps:
        libraries = {line.split()[-1] for line in maps if "libzmq" in line}
    assert len(libraries) == 1, libraries


def test_the_sdist_manifest_names_every_source_the_build_needs():
    # pip builds from an sdist, which holds only what MANIFEST.in names; a
    # header or include file left out builds here and fails there.
    package = pathlib.Path(__file__).resolve().parent.parent / "fastfedmsg"
    manifest = (package.parent / "MANIFEST.in").read_text().split()
    sources = sorted(path.relative_to(package.parent).as_posix()
                     for pattern in ("*.pyx", "*.pxi", "*.h", "*.pyi")
                     for path in package.glob(pattern))
    assert sources, "no compiled sources found next to the package"
    missing = [source for source in sources if source not in manifest]
    assert not missing, "MANIFEST.in does not include %s" % ", ".join(missing)


def test_an_unbuilt_checkout_that_hides_a_built_copy_says_so(tmp_path):
    # `python -c "import fastfedmsg"` from the top of a checkout imports the
    # source folder, even when a built fastfedmsg is installed: the error
    # must say which folder hides which, not only how to build.
    source = pathlib.Path(fastfedmsg.__file__).parent
    shutil.copytree(source, tmp_path / "fastfedmsg",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    built_parent = str(source.parent)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    code = ("import sys\n"
            "sys.meta_path[:] = [finder for finder in sys.meta_path\n"
            "                    if not getattr(finder, '__module__', '').startswith('__editable__')]\n"
            "sys.path.append(%r)\n"
            "import fastfedmsg\n" % built_parent)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env=env)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "hides the built fastfedmsg in %s" % source in last_line
    assert str(tmp_path / "fastfedmsg") in last_line

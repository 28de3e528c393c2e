"""fastfedmsg: a fast, drop-in replacement for fedmsg's publishing side.

``import fastfedmsg as fedmsg`` and keep calling ``fedmsg.publish(topic=...,
msg=...)``: the same config files apply and every fedmsg subscriber, relay
and checker accepts what is sent.  The hot path is compiled
(fastfedmsg._core); everything else is plain Python.
"""

def _built_copy_elsewhere(package_folder):
    """The folder of another, built fastfedmsg on sys.path, or None."""
    import importlib.machinery
    import os
    import sys

    parent = os.path.dirname(os.path.abspath(package_folder))
    for entry in sys.path:
        folder = os.path.join(os.path.abspath(entry or os.curdir), "fastfedmsg")
        if os.path.dirname(folder) != parent and any(
                os.path.exists(os.path.join(folder, "_core" + suffix))
                for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            return folder
    return None


try:
    from fastfedmsg import _core
except ImportError as exc:
    import importlib.util

    if importlib.util.find_spec("fastfedmsg._core") is not None:
        raise  # built, but failed to load: the error says why
    _elsewhere = _built_copy_elsewhere(__path__[0])
    raise ImportError(
        "fastfedmsg's compiled core (fastfedmsg._core) is not built in %s.%s Install the "
        "package with 'pip install .' (needs a C compiler and the Python headers), or "
        "build it in place with 'python setup.py build_ext --inplace'"
        % (__path__[0], "" if _elsewhere is None else
           " That source folder comes first on sys.path (Python looks in the current "
           "directory first) and hides the built fastfedmsg in %s: run from another "
           "directory to use that one." % _elsewhere)) from exc

from fastfedmsg.api import (
    current_context,
    destroy,
    init,
    publish,
    publish_many,
    send_message,
    stats,
    tail_messages,
)
from fastfedmsg import errors

__version__ = "0.1.0"

__all__ = [
    "current_context",
    "destroy",
    "errors",
    "init",
    "publish",
    "publish_many",
    "send_message",
    "stats",
    "tail_messages",
]

"""fastfedmsg: a fast, drop-in replacement for fedmsg's publishing side.

``import fastfedmsg as fedmsg`` and keep calling ``fedmsg.publish(topic=...,
msg=...)``: the same config files apply and every fedmsg subscriber, relay
and checker accepts what is sent.  The hot path is compiled
(fastfedmsg._core); everything else is plain Python.
"""

try:
    from fastfedmsg import _core
except ImportError as exc:
    import importlib.util

    if importlib.util.find_spec("fastfedmsg._core") is not None:
        raise  # built, but failed to load: the error says why
    raise ImportError(
        "fastfedmsg's compiled core (fastfedmsg._core) is not built in %s. Install the "
        "package with 'pip install .' (needs a C compiler and the Python headers), or "
        "build it in place with 'python setup.py build_ext --inplace'"
        % __path__[0]) from exc

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

"""fedmsg's module-level API: init, publish, destroy, tail_messages.

Contexts are per thread, as in fedmsg: init() builds the calling thread's
context; the first publish() in a thread without one calls init() with its
extra keyword arguments.  publish() itself is compiled (fastfedmsg._core) and
only calls back here to build a context.
"""

import json
import logging

import orjson
import zmq

from fastfedmsg import _core
from fastfedmsg.config import load_config
from fastfedmsg.context import Context, apply_socket_options
from fastfedmsg.errors import AlreadyInitializedError

log = logging.getLogger(__name__)

_state = _core.thread_state

publish = _core.publish
publish_many = _core.publish_many
send_message = _core.publish


def init(**kw):
    """Build this thread's context from the config files updated by ``kw``.

    Raises AlreadyInitializedError (a ValueError) if this thread has one,
    ConfigError (a ValueError) for a bad config, BindError (an IOError) when
    no endpoint can be bound, NoRelayError (a KeyError) when active=True and
    no relay is configured.
    """
    if getattr(_state, "context", None) is not None:
        raise AlreadyInitializedError(
            "fedmsg already initialized: this thread has a fastfedmsg context; call "
            "fastfedmsg.destroy() first to build a new one")

    context = Context(load_config(**kw))
    _state.context = context
    _state.publisher = context.publisher
    return context


def _init_for_publish(**kw):
    init(**kw)
    return _state.publisher


_core.set_init_hook(_init_for_publish)


def destroy(**kw):
    """Close this thread's context; the next publish builds a new one."""
    context = getattr(_state, "context", None)
    _state.context = None
    _state.publisher = None
    if context is not None:
        context.destroy()


def current_context():
    """This thread's Context, or None."""
    return getattr(_state, "context", None)


def decode(frame):
    """Decode a message frame as fedmsg's subscribers do (NaN and Infinity included)."""
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        return json.loads(frame)


def tail_messages(topic="", passive=False, **kw):
    """Subscribe to every endpoint in the config; yield (name, endpoint, topic, message).

    ``topic`` is a prefix filter; ``passive=True`` binds the endpoints instead
    of connecting to them.  ``endpoints`` in ``kw`` replaces the configured
    ones.  The generator closes its sockets when it is closed.
    """
    config = load_config(**kw)
    zmq_context = zmq.Context.instance()
    poller = zmq.Poller()
    subscribers = {}
    try:
        for name, endpoints in config["endpoints"].items():
            if name == "relay_inbound":
                continue
            for endpoint in endpoints:
                sub = zmq_context.socket(zmq.SUB)
                sub.setsockopt(zmq.LINGER, 0)
                apply_socket_options(sub, config)
                sub.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
                if passive:
                    sub.bind(endpoint)
                else:
                    sub.connect(endpoint)
                subscribers[sub] = (name, endpoint)
                poller.register(sub, zmq.POLLIN)
                log.debug("tailing %s (%s)", endpoint, name)

        while True:
            for sub, _event in poller.poll():
                name, endpoint = subscribers[sub]
                frames = sub.recv_multipart()
                message = decode(frames[-1])
                yield name, endpoint, frames[0].decode("utf-8"), message
    finally:
        for sub in subscribers:
            sub.close(linger=0)

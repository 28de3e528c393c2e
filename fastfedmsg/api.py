"""fedmsg's module-level API: init, publish, destroy, tail_messages.

Contexts are per thread, as in fedmsg: init() builds the calling thread's
context; the first publish() in a thread without one calls init() with its
extra keyword arguments.  publish() itself is compiled (fastfedmsg._core) and
only calls back here to build a context.

A thread's context is destroyed when the thread ends (its socket and
endpoint are released then, with the linger), and every context left open is
destroyed at interpreter exit (fastfedmsg.context).  In a child of os.fork(),
the first publish replaces a context inherited from the parent with a fresh
one made from the same config; in bind mode that needs an endpoint the parent
does not hold, and ForkedContextError says so when there is none.
"""

import json
import logging
import os

import orjson
import zmq

from fastfedmsg import _core
from fastfedmsg.config import load_config
from fastfedmsg.context import Context, apply_socket_options
from fastfedmsg.errors import AlreadyInitializedError, BindError, ForkedContextError

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

    return _install(Context(load_config(**kw)))


def _install(context):
    _state.context = context
    _state.publisher = context.publisher
    _state.release = _ReleaseAtThreadEnd(context)
    _core.thread_publishers_changed()
    return context


class _ReleaseAtThreadEnd:
    """Kept in the thread-local state next to the context: when a thread ends,
    Python drops its thread-local values in that thread, and this destroys
    the context, releasing its socket and endpoint."""

    __slots__ = ("context",)

    def __init__(self, context):
        self.context = context

    def __del__(self):
        context, self.context = self.context, None
        if context is not None:
            try:
                context.destroy()
            except Exception:  # nothing can be raised from here; say what happened
                if log is not None:
                    log.warning("could not destroy the fastfedmsg context of an ended "
                                "thread", exc_info=True)


def _forget_thread_state():
    context = getattr(_state, "context", None)
    release = getattr(_state, "release", None)
    if release is not None:
        release.context = None
    _state.context = _state.publisher = _state.release = None
    _core.thread_publishers_changed()
    return context


def _init_for_publish(**kw):
    init(**kw)
    return _state.publisher


def _renew_after_fork(**kw):
    """In a child of os.fork(): drop the parent's context (never closing its
    sockets) and make a fresh one from the same config, or from ``kw``."""
    inherited = _forget_thread_state()
    if inherited is not None:
        inherited.abandon()
    config = load_config(**kw) if kw or inherited is None else inherited.config
    try:
        context = Context(config)
    except BindError as exc:
        raise ForkedContextError(
            "this thread's fastfedmsg context was made before os.fork(), and the "
            "child (pid %d) cannot bind a fresh one: %s. The parent process still "
            "holds its endpoints; in the child call fastfedmsg.init() with a name that "
            "has an endpoint of its own, list a second endpoint for %r, or publish "
            "through a relay with active=True" % (os.getpid(), exc, config.get("name"))
        ) from exc
    log.info("fastfedmsg made a fresh context in forked process %d", os.getpid())
    return _install(context).publisher


_core.set_init_hook(_init_for_publish, _renew_after_fork)


def destroy(**kw):
    """Close this thread's context; the next publish builds a new one."""
    context = _forget_thread_state()
    if context is not None:
        context.destroy()


def stats():
    """{'sent': n, 'dropped': n} of this thread's context (zeros without one).

    ``dropped`` counts messages refused at the high-water mark with
    on_full='drop', and is None with on_full='fedmsg' (the default), where
    libzmq drops for a full subscriber without telling; see fastfedmsg.config.
    """
    context = getattr(_state, "context", None)
    return context.stats() if context is not None else {"sent": 0, "dropped": 0}


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

    When the config sets ``validate_signatures=True`` (in ``kw`` or a config
    file; fastfedmsg's defaults leave it unset, so unlike fedmsg's newer
    config nothing is checked unless asked), each message is checked with
    fastfedmsg.crypto.Validator (``ca_cert_location``, ``crl_location``,
    ``routing_policy``, ``routing_nitpicky``); invalid ones are logged at
    warning with the reason and skipped, as fedmsg does.  That needs the
    'sign' extra (ImportError otherwise).
    """
    config = load_config(**kw)
    validator = None
    if config.get("validate_signatures") is True:
        from fastfedmsg import crypto  # needs the 'sign' extra

        validator = crypto.Validator(config)
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
                if validator is not None:
                    reason = validator.check(message)
                    if reason is not None:
                        log.warning("skipped an invalid message from %s on %r: %s",
                                    endpoint, frames[0][:200], reason)
                        continue
                yield name, endpoint, frames[0].decode("utf-8"), message
    finally:
        for sub in subscribers:
            sub.close(linger=0)

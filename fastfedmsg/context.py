"""One thread's publishing context: the ZeroMQ socket and how it is set up.

A Context owns a zmq.Context, at most one PUB socket, and the compiled
Publisher (fastfedmsg._core) that writes envelopes into that socket.  Naming,
binding and socket options follow fedmsg.core.FedMsgContext; the errors are
clearer (fastfedmsg.errors).

Active mode (active=True) connects to a relay instead of binding.  A
connect is asynchronous and a PUB socket drops whatever it sends before the
relay's subscription has reached it, so fedmsg's short-lived scripts relied on
post_init_sleep.  Here the active socket is an XPUB (the same wire protocol
as PUB, so every fedmsg relay accepts it) and init() waits until the relay's
subscription arrives, at most ``active_connect_timeout`` seconds (default:
post_init_sleep), then returns at once: a script that publishes one message
and exits delivers it when a relay is up and never blocks longer than that
bound when none is.  Every open context is destroyed at interpreter exit, so
queued messages still go out within zmq_linger ms.

Faults
------
* Slow joiners: ``wait_for_subscribers=(count, timeout_s)`` makes init()
  return as soon as ``count`` subscriptions have reached the socket, or raise
  SubscriberTimeoutError; a subscription (unlike an accepted TCP connection)
  proves that its subscriber gets the next message.  The socket is an XPUB
  in bind mode too, which counts them.
* Full queues: by default (on_full='fedmsg') a subscriber whose queue
  (high_water_mark) is full misses the message on its own, silently, as with
  fedmsg's PUB socket; the others still get it.  Any other on_full sets
  ZMQ_XPUB_NODROP, so such a message is refused whole and on_full decides:
  'drop' (counted in stats()), 'block' (wait up to send_timeout ms) or
  'raise' (HighWaterMarkError).  libzmq can only refuse a message for every
  subscriber at once, so in those modes one stalled subscriber holds back
  all of them: choose them for a bus whose subscribers must not lose
  messages.  With high_water_mark 0 (the default) queues are never full.
* fork: a context made before os.fork() is never used or closed in the
  child: it is abandoned there (its sockets belong to the parent), and the
  module-level publish makes the child a fresh one (see api.py).
"""

import atexit
import logging
import os
import socket
import sys
import threading
import time
import weakref

import zmq

from fastfedmsg import _core
from fastfedmsg.errors import (
    BindError,
    NoEndpointError,
    NoRelayError,
    NoTransportError,
    SubscriberTimeoutError,
)

log = logging.getLogger(__name__)

#: config key -> ZeroMQ socket option, set when the key is present.
SOCKET_OPTIONS = (
    ("zmq_tcp_keepalive", zmq.TCP_KEEPALIVE),
    ("zmq_tcp_keepalive_cnt", zmq.TCP_KEEPALIVE_CNT),
    ("zmq_tcp_keepalive_idle", zmq.TCP_KEEPALIVE_IDLE),
    ("zmq_tcp_keepalive_intvl", zmq.TCP_KEEPALIVE_INTVL),
    ("zmq_reconnect_ivl", zmq.RECONNECT_IVL),
    ("zmq_reconnect_ivl_max", zmq.RECONNECT_IVL_MAX),
)


def short_hostname():
    return socket.gethostname().split(".", 1)[0]


def guess_name():
    """fedmsg's default name: the calling package plus '.' plus the short host name.

    None when the caller cannot be told apart from fastfedmsg itself.
    """
    frame = sys._getframe(1)
    while frame is not None:
        top = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if top and top not in ("fastfedmsg", "fedmsg"):
            return top + "." + short_hostname()
        frame = frame.f_back
    return None


def bind_address(endpoint):
    """fedmsg binds every interface on the endpoint's port: tcp://*:PORT."""
    return "tcp://*:%s" % endpoint.rsplit(":", 1)[-1]


def apply_socket_options(sock, config):
    """Set the high-water mark, keepalive and reconnect options from ``config``."""
    hwm = config.get("high_water_mark", 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for key, option in SOCKET_OPTIONS:
        if config.get(key) is not None:
            sock.setsockopt(option, config[key])


class _CannotPublish:
    """Stands where a publisher would be when the config leaves none: every
    publish raises the error that explains why."""

    def __init__(self, error):
        self.error = error

    def publish(self, *args, **kw):
        raise self.error

    publish_many = publish


#: Contexts not yet destroyed; _destroy_open_contexts closes them at exit.
_open_contexts = weakref.WeakSet()


def _destroy_open_contexts():
    """Destroy the contexts still open, so their queued messages are sent
    (each socket waits at most zmq_linger ms) before the interpreter exits."""
    main = threading.main_thread()
    for context in list(_open_contexts):
        owner = context.owner_thread
        if owner is not main and owner.is_alive():
            # A daemon thread may still be using its socket, and a ZeroMQ
            # socket must not be closed under a thread that uses it.
            log.debug("fastfedmsg leaves the context of live thread %s open at exit",
                      owner.name)
            continue
        context.destroy()


atexit.register(_destroy_open_contexts)

#: In a child of os.fork(): the contexts inherited from the parent, kept
#: referenced so that nothing ever closes or collects their sockets there.
_inherited_contexts = []


def _abandon_contexts_after_fork():
    _inherited_contexts.extend(_open_contexts)
    _open_contexts.clear()


os.register_at_fork(after_in_child=_abandon_contexts_after_fork)


class Context:
    """The publishing state of one thread, built from a checked config."""

    def __init__(self, config):
        self.config = config
        self.hostname = short_hostname()
        self.owner_thread = threading.current_thread()
        self.zmq_context = None
        self.socket = None
        self.endpoint = None
        self.publisher = None
        self.relay_subscribed = False
        self.subscribers_seen = 0
        self.fork_generation = _core.fork_generation()
        self._final_stats = {"sent": 0, "dropped": 0}

        if config.get("active"):
            config["name"] = config.get("name") or "relay_inbound"
        elif not config.get("name"):
            config["name"] = guess_name()
        self.name = config["name"]

        if config.get("mute"):
            self.publisher = _CannotPublish(NoTransportError(
                "this context was made with mute=True and cannot publish; drop mute "
                "to publish"))
        elif not config.get("zmq_enabled", True):
            self.publisher = self._other_transport()
        else:
            self._open_zmq()
        try:
            if config.get("sign_messages"):
                self.publisher = self._signing(self.publisher)

            if self.socket is not None and config.get("wait_for_subscribers"):
                self._wait_for_subscribers(*config["wait_for_subscribers"])
            elif self.socket is not None and config.get("active"):
                self._wait_for_relay()
            elif self.socket is not None and config.get("post_init_sleep"):
                # Only a ZeroMQ socket has slow joiners to wait for; STOMP is
                # connected before init() returns.
                time.sleep(config["post_init_sleep"])
        except BaseException:
            self.destroy()
            raise

    # -- ZeroMQ ----------------------------------------------------------------

    def _open_zmq(self):
        config = self.config
        if config.get("active"):
            endpoints = self._relay_endpoints()
            method = "connect"
        else:
            endpoints = config["endpoints"].get(self.name) if self.name else None
            method = "bind"
            if not endpoints:
                log.warning("no endpoint configured for name %r; publishing will fail",
                            self.name)
                self.publisher = _CannotPublish(NoEndpointError(
                    "no endpoint is configured for name %r, so there is nowhere to "
                    "publish; add it under 'endpoints' in the config (for example "
                    "endpoints[%r] = ['tcp://127.0.0.1:3000']) or publish through a "
                    "relay with active=True" % (self.name, self.name), name=self.name))
                return

        self.zmq_context = zmq.Context(config.get("io_threads", 1))
        # XPUB sends exactly as PUB does (every SUB socket and relay accepts
        # it) and also reports subscriptions, which is how init() knows who
        # is listening (_wait_for_relay, _wait_for_subscribers); with NODROP
        # (any on_full but 'fedmsg') it refuses a message at the high-water
        # mark instead of dropping it unseen, and the Publisher applies
        # on_full.
        on_full = config.get("on_full", "fedmsg")
        sock = self.zmq_context.socket(zmq.XPUB)
        try:
            apply_socket_options(sock, config)
            sock.setsockopt(zmq.LINGER, config.get("zmq_linger", 1000))
            if on_full != "fedmsg":
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            sock.setsockopt(zmq.SNDTIMEO, config.get("send_timeout", 1000))
            if config.get("wait_for_subscribers"):
                # Report every subscription, not only the first to a topic.
                sock.setsockopt(zmq.XPUB_VERBOSE, 1)
            self.endpoint = self._attach(sock, method, endpoints)
        except BaseException:
            sock.close(linger=0)
            self.zmq_context.term()
            self.zmq_context = None
            raise

        self.socket = sock
        _open_contexts.add(self)
        self.publisher = _core.Publisher(
            sock, config["topic_prefix"], config["environment"], _core.username(),
            # Without NODROP no send is ever refused, so the Publisher's mode
            # for refusals does not matter for 'fedmsg'.
            on_full="drop" if on_full == "fedmsg" else on_full,
            send_timeout=config.get("send_timeout", 1000),
            max_message_size=config.get("max_message_size"))
        log.debug("fastfedmsg %s %s as %r", method, self.endpoint, self.name)

    def _relay_endpoints(self):
        relay = self.config.get(self.name) if self.name != "relay_inbound" else None
        relay = relay or self.config.get("relay_inbound")
        if not relay:
            raise NoRelayError(
                "active=True publishes through a relay, but no relay address is "
                "configured; set 'relay_inbound' (for example 'tcp://127.0.0.1:2001') "
                "in the config and run fastfedmsg-relay or fedmsg-relay there")
        return [relay] if isinstance(relay, str) else list(relay)

    def _wait_for_relay(self):
        """Block until the relay's subscription reaches the XPUB socket, or
        until active_connect_timeout (default post_init_sleep) seconds pass."""
        timeout = self.config.get("active_connect_timeout")
        if timeout is None:
            timeout = self.config.get("post_init_sleep", 0)
        started = time.monotonic()

        # The first frame an XPUB receives is a subscription (b"\x01" + prefix).
        if timeout > 0 and self.socket.poll(int(timeout * 1000), zmq.POLLIN):
            while self.socket.poll(0, zmq.POLLIN):
                self.socket.recv(zmq.NOBLOCK)
            self.relay_subscribed = True
            log.debug("relay at %s subscribed after %.3f s", self.endpoint,
                      time.monotonic() - started)
        else:
            log.info("no relay subscribed at %s within %.3f s; messages published "
                     "before one does are dropped", self.endpoint, timeout)

    def _wait_for_subscribers(self, count, timeout):
        """Return once ``count`` subscriptions have arrived; raise
        SubscriberTimeoutError after ``timeout`` seconds with fewer.

        Every subscription a SUB socket makes counts once (one SUB socket
        subscribed to two topics counts twice).
        """
        started = time.monotonic()
        deadline = started + timeout
        seen = 0
        while seen < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(max(1, int(left * 1000)), zmq.POLLIN):
                break
            while seen < count and self.socket.poll(0, zmq.POLLIN):
                if self.socket.recv(zmq.NOBLOCK)[:1] == b"\x01":
                    seen += 1
        self.socket.setsockopt(zmq.XPUB_VERBOSE, 0)
        self.subscribers_seen = seen
        self.relay_subscribed = bool(seen) and bool(self.config.get("active"))
        if seen < count:
            raise SubscriberTimeoutError(
                "%d of the %d subscriptions asked for by wait_for_subscribers reached %s "
                "within %.3f s; start the subscribers first (they reconnect on their own), "
                "give them more time, or ask for fewer" % (seen, count, self.endpoint, timeout),
                expected=count, seen=seen, timeout=timeout)
        log.debug("%d subscriptions reached %s after %.3f s", seen, self.endpoint,
                  time.monotonic() - started)

    def _attach(self, sock, method, endpoints):
        attempts = []
        for endpoint in endpoints:
            address = bind_address(endpoint) if method == "bind" else endpoint
            try:
                getattr(sock, method)(address)
                return address
            except zmq.ZMQError as exc:
                attempts.append((address, zmq.strerror(exc.errno)))
        raise BindError(
            "could not %s a publishing socket for name %r; tried %s. Free one of these "
            "ports, list another endpoint for the name, or publish through a relay "
            "with active=True" % (method, self.name, "; ".join(
                "%s (%s)" % attempt for attempt in attempts)),
            name=self.name, attempts=attempts)

    # -- other transports --------------------------------------------------------

    def _other_transport(self):
        if self.config.get("stomp_uri"):
            from fastfedmsg.transports.stomp import StompPublisher
            return StompPublisher(self.config)
        return _CannotPublish(NoTransportError(
            "zmq_enabled is False and no other transport is configured, so there is "
            "nowhere to publish; set 'stomp_uri' (for example 'localhost:61613') to "
            "publish through a STOMP broker, or set zmq_enabled=True"))

    # -- signing -----------------------------------------------------------------

    def _signing(self, publisher):
        """Wrap ``publisher`` so every envelope is signed (fastfedmsg.crypto).

        The key and certificate are read at the first publish, so a missing
        certnames entry or file raises there, as in fedmsg.
        """
        if isinstance(publisher, _CannotPublish):
            return publisher
        if not (hasattr(publisher, "build") and hasattr(publisher, "send_frames")):
            return _CannotPublish(NoTransportError(
                "sign_messages=True, but the %s transport cannot sign messages; publish "
                "over ZeroMQ or set sign_messages=False" % type(publisher).__name__))
        from fastfedmsg.crypto import SigningPublisher
        return SigningPublisher(publisher, self.config, hostname=self.hostname)

    # -- lifecycle ---------------------------------------------------------------

    def stats(self):
        """{'sent': n, 'dropped': n}: messages the socket accepted, and messages
        dropped at the high-water mark (on_full='drop'), since init (still
        readable after destroy()).  With on_full='fedmsg' (the default)
        libzmq drops for a full subscriber without telling anyone, so
        'dropped' is None: unknown, not zero."""
        publisher = self.publisher
        while publisher is not None and not hasattr(publisher, "dropped"):
            publisher = getattr(publisher, "publisher", None)  # a wrapper (signing)
        if publisher is None:
            figures = dict(self._final_stats)
        else:
            figures = {"sent": publisher.sent, "dropped": publisher.dropped}
        if self.config.get("on_full", "fedmsg") == "fedmsg":
            figures["dropped"] = None
        return figures

    @property
    def inherited(self):
        """True in a child of os.fork() for a context the parent made."""
        return self.fork_generation != _core.fork_generation()

    def abandon(self):
        """Forget the socket without closing it: for a context inherited over
        os.fork(), whose ZeroMQ objects only the parent may close."""
        _open_contexts.discard(self)
        if self.socket is not None or self.zmq_context is not None:
            _inherited_contexts.append((self.socket, self.zmq_context, self.publisher))
        self.publisher = self.socket = self.zmq_context = None

    def destroy(self):
        """Close the socket (with its linger) and the ZeroMQ context.

        In a child of os.fork(), a context the parent made is abandoned
        instead: closing it there would act on the parent's sockets.
        """
        if self.inherited:
            self.abandon()
            return
        _open_contexts.discard(self)
        self._final_stats = self.stats()
        publisher, self.publisher = self.publisher, None
        if isinstance(publisher, _core.Publisher):
            log.debug("fastfedmsg closing %s after %d messages", self.endpoint, publisher.sent)
            publisher.close()
        elif publisher is not None and hasattr(publisher, "close"):
            publisher.close()
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.zmq_context is not None:
            self.zmq_context.term()
            self.zmq_context = None

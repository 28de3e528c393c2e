"""One thread's publishing context: the ZeroMQ socket and how it is set up.

A Context owns a zmq.Context, at most one PUB socket, and the compiled
Publisher (fastfedmsg._core) that writes envelopes into that socket.  Naming,
binding and socket options follow fedmsg.core.FedMsgContext; the errors are
clearer (fastfedmsg.errors).
"""

import logging
import socket
import sys
import time

import zmq

from fastfedmsg import _core
from fastfedmsg.errors import BindError, NoEndpointError, NoRelayError, NoTransportError

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


class Context:
    """The publishing state of one thread, built from a checked config."""

    def __init__(self, config):
        self.config = config
        self.hostname = short_hostname()
        self.zmq_context = None
        self.socket = None
        self.endpoint = None
        self.publisher = None

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

        if config.get("post_init_sleep"):
            time.sleep(config["post_init_sleep"])

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
        sock = self.zmq_context.socket(zmq.PUB)
        try:
            apply_socket_options(sock, config)
            sock.setsockopt(zmq.LINGER, config.get("zmq_linger", 1000))
            self.endpoint = self._attach(sock, method, endpoints)
        except BaseException:
            sock.close(linger=0)
            self.zmq_context.term()
            self.zmq_context = None
            raise

        self.socket = sock
        self.publisher = _core.Publisher(
            sock, config["topic_prefix"], config["environment"], _core.username())
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

    def _attach(self, sock, method, endpoints):
        attempts = []
        for endpoint in endpoints:
            address = bind_address(endpoint) if method == "bind" else endpoint
            try:
                getattr(sock, method)(address)
                return address
            except zmq.ZMQError as exc:
                attempts.append((address, str(exc)))
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

    # -- lifecycle ---------------------------------------------------------------

    def destroy(self):
        """Close the socket (with its linger) and the ZeroMQ context."""
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

"""fastfedmsg-relay: forward messages from active publishers to the bus.

A drop-in for fedmsg-relay.  Short-lived or multi-process producers
(fedmsg-logger, fastfedmsg with active=True) connect a PUB socket to
``relay_inbound``; the relay binds a SUB socket there, subscribed to
everything, and a PUB socket on the first bindable endpoint of
``endpoints["relay_outbound"]``, and forwards every message unchanged.

Theory of operation: the forwarding is libzmq's own proxy
(zmq.proxy_steerable), which runs in a worker thread without the GIL; no
Python code touches a message.  The main thread blocks SIGINT and SIGTERM and
waits for one of them; then it asks the proxy for its counters (the
STATISTICS command on an inproc control socket), tells it to TERMINATE, and
closes the outbound socket with its linger so queued messages still go out.

With ``--sign`` it is a drop-in for fedmsg-signing-relay instead: every
forwarded message is signed with the certificate named by
``certnames["signing_relay"]`` (``ssldir/CERTNAME.key`` and ``.crt``),
replacing any signature it had.  libzmq's proxy cannot change a message, so
SigningRelay forwards in a Python loop in the worker thread: receive a
message, sign its last frame (the JSON body; the topic frame is kept),
send it without blocking.  A message whose body cannot be signed (not JSON,
not a JSON object) is dropped, never forwarded unsigned; the first such drop
is logged at warning with the reason, later ones at most once a minute, and
the stop line counts them.  The stop protocol (signals, the inproc control
socket's TERMINATE) is the same in both modes.

Each address is bound as written; when its host is not an address of this
machine, the relay binds the same port on every interface (tcp://*:PORT), as
fedmsg's publishers do.
"""

import argparse
import errno
import glob
import logging
import os
import signal
import sys
import threading
import time

import zmq

from fastfedmsg.config import load_config
from fastfedmsg.context import apply_socket_options
from fastfedmsg.errors import BindError, ConfigError, FastFedmsgError

# Named after the module even when run as ``python -m fastfedmsg.tools.relay``.
log = logging.getLogger("fastfedmsg.tools.relay")

#: fedmsg's default for endpoints["relay_outbound"], used when the config has none.
DEFAULT_OUTBOUND = "tcp://127.0.0.1:4001"

#: How often the main thread checks that the proxy thread is still running.
WATCH_INTERVAL_S = 0.5

#: Errors that mean "this host is not one of this machine's addresses".
_NOT_LOCAL = (errno.EADDRNOTAVAIL, errno.ENODEV, errno.EINVAL)

#: The certnames key whose certificate a signing relay signs with (fedmsg's).
SIGNING_CERTNAMES_KEY = "signing_relay"

#: With --sign, at most one warning about unsignable messages per this many seconds.
DROP_WARNING_INTERVAL_S = 60.0

#: With --sign, messages forwarded per wake-up before the control socket is checked.
SIGN_BATCH = 256

#: Exit statuses: a clean stop; a bind or forwarding failure; a bad config.
EXIT_OK, EXIT_FAILED, EXIT_BAD_CONFIG = 0, 1, 2


def wildcard_address(address):
    """tcp://HOST:PORT -> tcp://*:PORT; None for other transports or a wildcard."""
    if not address.startswith("tcp://") or address.startswith("tcp://*:"):
        return None
    return "tcp://*:%s" % address.rsplit(":", 1)[-1]


def bind_first(sock, addresses, role):
    """Bind ``sock`` to the first address that binds; return the address bound.

    Raises BindError listing every address tried and why it failed.
    """
    attempts = []
    for address in addresses:
        candidates = [address]
        for candidate in candidates:
            try:
                sock.bind(candidate)
                return candidate
            except zmq.ZMQError as exc:
                attempts.append((candidate, exc.strerror))
                wildcard = wildcard_address(candidate)
                if exc.errno in _NOT_LOCAL and wildcard and wildcard not in candidates:
                    candidates.append(wildcard)
    busy = any(reason.startswith(os.strerror(errno.EADDRINUSE)) for _address, reason in attempts)
    advice = ("Stop whatever holds the port, or give another address" if busy else
              "Give an address such as tcp://*:2001 or tcp://127.0.0.1:2001")
    raise BindError(
        "fastfedmsg-relay could not bind its %s socket; tried %s. %s (%s)" % (
            role, "; ".join("%s (%s)" % attempt for attempt in attempts), advice,
            "--inbound or relay_inbound" if role == "inbound" else
            "--outbound or endpoints['relay_outbound']"),
        name=role, attempts=attempts)


class Relay:
    """A bound SUB -> PUB pair forwarded by libzmq's proxy.

    ``config`` supplies the socket options (high_water_mark, keepalive,
    reconnect, io_threads, zmq_linger).  ``start()`` binds both sockets and
    starts forwarding in a thread; ``stop()`` ends it and returns the
    counters; ``wait(timeout)`` is True once the proxy has ended.
    """

    def __init__(self, inbound, outbound, config):
        self.inbound_candidates = list(inbound)
        self.outbound_candidates = list(outbound)
        self.config = config
        self.inbound = None
        self.outbound = None
        self.failure = None
        self._zmq_context = None
        self._sockets = []
        self._control = None
        self._thread = None

    def start(self):
        """Bind both sockets and start forwarding; raises BindError."""
        self._zmq_context = zmq.Context(self.config.get("io_threads", 1))
        try:
            frontend = self._socket(zmq.SUB, linger=0)
            frontend.setsockopt(zmq.SUBSCRIBE, b"")
            self.inbound = bind_first(frontend, self.inbound_candidates, "inbound")

            backend = self._socket(zmq.PUB, linger=self.config.get("zmq_linger", 1000))
            self.outbound = bind_first(backend, self.outbound_candidates, "outbound")

            control_address = "inproc://fastfedmsg-relay-control-%x" % id(self)
            proxy_control = self._socket(zmq.PAIR, linger=0)
            proxy_control.bind(control_address)
            self._control = self._socket(zmq.PAIR, linger=0)
            self._control.connect(control_address)
        except BaseException:
            self._close(outbound_linger=0)
            raise

        self._thread = threading.Thread(
            target=self._forward, args=(frontend, backend, proxy_control),
            name="fastfedmsg-relay-proxy", daemon=True)
        self._thread.start()

    def _socket(self, kind, linger):
        sock = self._zmq_context.socket(kind)
        self._sockets.append(sock)
        sock.setsockopt(zmq.LINGER, linger)
        apply_socket_options(sock, self.config)
        return sock

    def _forward(self, frontend, backend, control):
        try:
            zmq.proxy_steerable(frontend, backend, None, control)
        except zmq.ZMQError as exc:
            self.failure = exc
            log.error("fastfedmsg-relay stopped forwarding: %s", exc)

    def wait(self, timeout):
        """True once the proxy thread has ended (by stop() or an error)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def statistics(self, timeout_ms=2000):
        """The proxy's counters as a dict, or None if it does not answer.

        libzmq counts frames; a fedmsg message is two (topic and body).
        """
        self._control.send(b"STATISTICS")
        if not self._control.poll(timeout_ms):
            return None
        values = [int.from_bytes(frame, sys.byteorder)
                  for frame in self._control.recv_multipart()]
        names = ("frames_in", "bytes_in", "frames_out", "bytes_out")
        return {"inbound": dict(zip(names, values[:4])),
                "outbound": dict(zip(names, values[4:8]))}

    def stop(self):
        """End forwarding, close the sockets; return the final statistics."""
        stats = None
        if self._thread is not None and self._thread.is_alive():
            stats = self.statistics()
            self._control.send(b"TERMINATE")
            if not self.wait(5.0):
                log.error("fastfedmsg-relay proxy did not stop within 5 s")
        self._close()
        return stats

    def _close(self, outbound_linger=None):
        for sock in self._sockets:
            if outbound_linger is not None:
                sock.setsockopt(zmq.LINGER, outbound_linger)
            sock.close()
        self._sockets = []
        if self._zmq_context is not None:
            self._zmq_context.term()
            self._zmq_context = None


class SigningRelay(Relay):
    """A Relay that signs every message it forwards with ``signer``
    (a fastfedmsg.crypto.Signer) and drops those it cannot sign.

    ``statistics()`` has the Relay's shape (counted here, not by libzmq) plus
    ``dropped`` (messages that could not be signed) and ``dropped_full``
    (signed messages refused by the outbound socket).
    """

    def __init__(self, inbound, outbound, config, signer):
        super().__init__(inbound, outbound, config)
        self.signer = signer
        self.frames_in = self.bytes_in = self.frames_out = self.bytes_out = 0
        self.dropped = self.dropped_full = 0
        self._dropped_since_warning = 0
        self._next_warning = 0.0

    def _forward(self, frontend, backend, control):
        poller = zmq.Poller()
        poller.register(frontend, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if control in ready and control.recv() == b"TERMINATE":
                    return
                if frontend in ready:
                    self._forward_batch(frontend, backend)
        except zmq.ZMQError as exc:
            self.failure = exc
            log.error("fastfedmsg-relay stopped forwarding: %s", exc)

    def stop(self):
        """End forwarding, close the sockets; return the final counters."""
        if self._thread is not None and self._thread.is_alive():
            self._control.send(b"TERMINATE")
            if not self.wait(5.0):
                log.error("fastfedmsg-relay signing loop did not stop within 5 s")
        self._close()
        return self.statistics()

    def _forward_batch(self, frontend, backend):
        for _ in range(SIGN_BATCH):
            try:
                frames = frontend.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.frames_in += len(frames)
            self.bytes_in += sum(len(frame) for frame in frames)
            try:
                frames[-1] = self.signer.sign_frame(frames[-1])
            except Exception as exc:  # noqa: BLE001 - any unsignable body is dropped, not fatal
                self._drop(frames[0], exc)
                continue
            try:
                backend.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                self.dropped_full += 1
                continue
            self.frames_out += len(frames)
            self.bytes_out += sum(len(frame) for frame in frames)

    def _drop(self, topic_frame, reason):
        self.dropped += 1
        self._dropped_since_warning += 1
        now = time.monotonic()
        if now < self._next_warning:
            return
        log.warning("fastfedmsg-relay dropped %d message(s) it could not sign (never "
                    "forwarded unsigned); the latest, on topic %r: %s",
                    self._dropped_since_warning, topic_frame[:200], reason)
        self._dropped_since_warning = 0
        self._next_warning = now + DROP_WARNING_INTERVAL_S

    def statistics(self, timeout_ms=2000):
        return {"inbound": {"frames_in": self.frames_in, "bytes_in": self.bytes_in},
                "outbound": {"frames_out": self.frames_out, "bytes_out": self.bytes_out},
                "dropped": self.dropped, "dropped_full": self.dropped_full}


def make_signer(config):
    """The Signer for certnames["signing_relay"]; raises FastFedmsgError or
    ImportError (without the 'sign' extra) with a sentence saying what to fix."""
    from fastfedmsg import crypto  # needs the 'sign' extra; only for --sign

    return crypto.Signer(config, certnames_key=SIGNING_CERTNAMES_KEY)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastfedmsg-relay",
        description="Forward fedmsg messages from active publishers (fedmsg-logger, "
        "fastfedmsg with active=True) to subscribers: bind a SUB socket on "
        "relay_inbound and a PUB socket on the first bindable endpoint of "
        "endpoints['relay_outbound'], and forward every message unchanged. "
        "Settings come from the fedmsg config files (see fastfedmsg.config); the "
        "options below override them. Stop it with SIGINT or SIGTERM.",
        epilog="With --sign (a drop-in for fedmsg-signing-relay) every forwarded message "
        "is signed with the X.509 key pair of certnames['signing_relay'] from the config "
        "(ssldir/CERTNAME.key and ssldir/CERTNAME.crt, read once at start), replacing "
        "any signature it carried; a message whose body is not a JSON object cannot be "
        "signed and is dropped with a warning, never forwarded unsigned, and the stop "
        "line counts the drops. --sign needs the 'sign' extra "
        "(pip install 'fastfedmsg[sign]'). "
        "Exit status: 0 after a clean stop, 1 if a socket could not be bound, "
        "2 for a bad config or command line, or when --sign cannot load its "
        "certificate and key.")
    parser.add_argument(
        "--config", metavar="FILE", action="append",
        help="read this fedmsg config file (or folder of *.py files) instead of the "
        "usual search path; repeat to read several, later ones win")
    parser.add_argument(
        "--inbound", metavar="ADDRESS",
        help="address to bind the inbound SUB socket on, e.g. tcp://*:2001 "
        "(default: relay_inbound from the config)")
    parser.add_argument(
        "--outbound", metavar="ADDRESS", action="append",
        help="address to bind the outbound PUB socket on; repeat to give fallbacks, "
        "the first that binds is used (default: endpoints['relay_outbound'] from the "
        "config, else %s)" % DEFAULT_OUTBOUND)
    parser.add_argument(
        "--high-water-mark", metavar="N", type=int,
        help="messages queued per peer before ZeroMQ drops (0: no limit; default: "
        "high_water_mark from the config)")
    parser.add_argument(
        "--io-threads", metavar="N", type=int,
        help="libzmq I/O threads (default: io_threads from the config)")
    parser.add_argument(
        "--linger", metavar="MS", type=int,
        help="at stop, how long to keep sending queued messages (default: zmq_linger "
        "from the config)")
    parser.add_argument(
        "--sign", action="store_true",
        help="sign every forwarded message with certnames['signing_relay'], as "
        "fedmsg-signing-relay does (see below)")
    parser.add_argument(
        "--log-level", default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default: INFO")
    return parser


def load_relay_config(args):
    """The config files with the command line's overrides; raises ConfigError."""
    overrides = {}
    if args.inbound is not None:
        overrides["relay_inbound"] = args.inbound
    if args.outbound:
        overrides["endpoints"] = {"relay_outbound": list(args.outbound)}
    for key, value in (("high_water_mark", args.high_water_mark),
                       ("io_threads", args.io_threads), ("zmq_linger", args.linger)):
        if value is not None:
            overrides[key] = value
    return load_config(config_paths(args.config), require_endpoints=False, **overrides)


def config_paths(given):
    """--config values as files: a folder stands for its *.py files in name order."""
    if not given:
        return None
    paths = []
    for path in given:
        if os.path.isdir(path):
            paths.extend(sorted(glob.glob(os.path.join(glob.escape(path), "*.py"))))
        else:
            paths.append(path)
    return paths


def relay_addresses(config):
    """(inbound addresses, outbound addresses) from a loaded config."""
    inbound = config.get("relay_inbound")
    if not inbound:
        raise ConfigError(
            "no relay address is configured: 'relay_inbound' is %r; set it in the "
            "config (for example 'tcp://*:2001') or pass --inbound" % (inbound,),
            key="relay_inbound")
    outbound = config["endpoints"].get("relay_outbound")
    if not outbound:
        log.info("no endpoints['relay_outbound'] in the config; using fedmsg's default "
                 "%s", DEFAULT_OUTBOUND)
        outbound = [DEFAULT_OUTBOUND]
    inbound = [inbound] if isinstance(inbound, str) else list(inbound)
    return inbound, list(outbound)


def serve(relay):
    """Forward until SIGINT or SIGTERM (or a proxy failure); return the exit status."""
    # Block the stop signals before the proxy thread starts, so that it
    # inherits the mask and only this thread's sigtimedwait sees them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        relay.start()
        log.info("fastfedmsg-relay forwarding from %s (SUB) to %s (PUB)",
                 relay.inbound, relay.outbound)
        received = None
        while received is None and not relay.wait(0):
            received = signal.sigtimedwait(stop_signals, WATCH_INTERVAL_S)
        stats = relay.stop()

        # Logged before the mask is restored, so a second signal cannot cut it.
        reason = signal.Signals(received.si_signo).name if received else "proxy failure"
        if stats is None:
            log.info("fastfedmsg-relay stopped (%s); message count unavailable", reason)
        else:
            frames = stats["outbound"]["frames_out"]
            dropped = ""
            if "dropped" in stats:
                dropped = ", dropped %d that could not be signed and %d at the high-water " \
                          "mark" % (stats["dropped"], stats["dropped_full"])
            log.info("fastfedmsg-relay stopped (%s): forwarded %d messages (%d frames, "
                     "%d bytes)%s", reason, frames // 2, frames,
                     stats["outbound"]["bytes_out"], dropped)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return EXIT_OK if relay.failure is None else EXIT_FAILED


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_relay_config(args)
        inbound, outbound = relay_addresses(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_BAD_CONFIG

    if args.sign:
        try:
            signer = make_signer(config)
        except ImportError as exc:
            log.error("--sign needs the 'cryptography' package, which comes with the "
                      "'sign' extra: pip install 'fastfedmsg[sign]' (%s)", exc)
            return EXIT_BAD_CONFIG
        except (FastFedmsgError, ValueError, OSError) as exc:
            log.error("fastfedmsg-relay --sign cannot sign: %s", exc)
            return EXIT_BAD_CONFIG
        log.info("fastfedmsg-relay signing with %s (%s, CN %r)", signer.cert_path,
                 signer.source, signer.common_name)
        relay = SigningRelay(inbound, outbound, config, signer)
    else:
        relay = Relay(inbound, outbound, config)
    try:
        return serve(relay)
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

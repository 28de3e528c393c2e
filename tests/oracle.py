"""Real fedmsg 1.1.7 run in the test process, as the reference for fastfedmsg.

fedmsg.init() reads fedmsg's legacy configuration through
fedmsg.config.load_config(), which raises without ``endpoints`` in a file,
caches its result for the whole process, and lets init() write the keyword
arguments into that cached dict.  FedmsgPublisher therefore writes a config
file with one endpoint, loads it with invalidate_cache=True right before
init(), and builds fedmsg's context with post_init_sleep=0.  close() undoes
everything: it closes the socket with linger 0, terminates fedmsg's ZeroMQ
context and clears fedmsg's thread-local (``fedmsg.__local``).

Helpers shared by the compatibility tests live here too: how a probe is told
apart from a real message, how an envelope's generated fields are checked,
and how two envelopes are compared.
"""

import datetime
import gc
import getpass
import json
import re
import time
import uuid
import warnings

import fedmsg
import fedmsg.config
import fedmsg.encoding
import zmq

#: Topic part of every probe; real test messages never contain it.
PROBE = "oracle-probe"

#: local year, '-', an RFC 4122 version-4 UUID in lower-case hex.
MSG_ID = re.compile(
    r"^(?P<year>[0-9]{4})-(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}"
    r"-[0-9a-f]{12})$")

#: The fields fedmsg 1.1.7 puts in every unsigned envelope.
ENVELOPE_KEYS = {"topic", "msg", "timestamp", "msg_id", "i", "username"}

#: Fields that differ between any two publishes, by design.
GENERATED_KEYS = ("msg_id", "timestamp", "i")


def fedmsg_thread_state():
    """fedmsg's thread-local holder of the current context (``fedmsg.__local``)."""
    return vars(fedmsg)["__local"]


def close_fedmsg():
    """Destroy this thread's fedmsg context, if any, without waiting on linger,
    and forget fedmsg's cached config so that no later test inherits it.

    fedmsg.destroy() itself would call init() in a thread that never had a
    context, and fedmsg sets no LINGER on a bound socket, so it is done here.
    """
    state = fedmsg_thread_state()
    context = getattr(state, "__context", None)
    if context is not None:
        publisher = getattr(context, "publisher", None)
        if publisher is not None:
            publisher.setsockopt(zmq.LINGER, 0)
        context.destroy()
    if hasattr(state, "__context"):
        delattr(state, "__context")
    vars(fedmsg.config)["__cache"] = {}


class FedmsgPublisher:
    """fedmsg's thread context, bound to tcp://*:PORT under ``name``."""

    def __init__(self, directory, name, port, **config):
        config.setdefault("post_init_sleep", 0)
        config.setdefault("zmq_linger", 0)
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self.config_path = directory / ("fedmsg-oracle-%d.py" % port)
        self.config_path.write_text("config = %r\n" % dict(
            config, endpoints={name: [self.endpoint]}))

        close_fedmsg()
        fedmsg.config.load_config(filenames=[str(self.config_path)], invalidate_cache=True)
        self.context = fedmsg.init(name=name, **config)

    @property
    def i(self):
        """fedmsg's counter: the ``i`` of the last envelope it built."""
        return self.context._i

    def publish(self, topic=None, msg=None, modname=None, **kw):
        fedmsg.publish(topic=topic, msg=msg, modname=modname, **kw)

    def probe(self):
        fedmsg.publish(topic=PROBE, msg={}, modname="oracle")

    def close(self):
        close_fedmsg()


def is_probe(frames):
    return PROBE.encode("ascii") in frames[0]


def recv_real(subscriber, timeout=5.0):
    """The next [topic, body] frames that are not a probe."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no message arrived within %.1f s" % timeout)
        frames = subscriber.recv(left)
        if not is_probe(frames):
            return frames


def assert_nothing_real_arrives(subscriber, quiet=0.2):
    """Fail if anything but a probe arrives within ``quiet`` seconds."""
    while subscriber.socket.poll(int(quiet * 1000)):
        frames = subscriber.socket.recv_multipart()
        assert is_probe(frames), "unexpected message arrived: %r" % (frames,)


def decode(frames):
    """Decode a body frame as fedmsg's subscribers do (NaN and Infinity included)."""
    assert len(frames) == 2, "expected [topic, body], found %d frames" % len(frames)
    return fedmsg.encoding.loads(frames[1].decode("utf-8"))


def check_generated_fields(envelope, started, finished):
    """msg_id, timestamp and username are what fedmsg would generate.

    ``started`` and ``finished`` are time.time() readings taken just before
    and just after the publish call.
    """
    assert set(envelope) == ENVELOPE_KEYS, "envelope keys: %s" % sorted(envelope)

    match = MSG_ID.match(envelope["msg_id"])
    assert match, "msg_id %r is not YEAR-UUID4" % envelope["msg_id"]
    years = {datetime.datetime.fromtimestamp(started).year,
             datetime.datetime.fromtimestamp(finished).year}
    assert int(match.group("year")) in years
    assert uuid.UUID(match.group("uuid")).version == 4

    assert type(envelope["timestamp"]) is int
    assert int(started) <= envelope["timestamp"] <= int(finished)

    assert envelope["username"] == getpass.getuser()
    assert type(envelope["i"]) is int


def canonical(value):
    """Text that compares equal for equal JSON values, NaN included."""
    return json.dumps(value, sort_keys=True)


def assert_same_envelope(fast_frames, fedmsg_frames):
    """fastfedmsg's frames carry what fedmsg's carry, apart from the generated fields.

    Frame 0 must be identical.  The decoded envelopes must be equal once
    fedmsg's msg_id, timestamp and i are copied over: fedmsg's own encoder
    must then give the same bytes for both (what a signature checker
    recomputes from a decoded message).
    """
    assert fast_frames[0] == fedmsg_frames[0]
    fast, reference = decode(fast_frames), decode(fedmsg_frames)
    assert fast["topic"] == reference["topic"] == fast_frames[0].decode("utf-8")
    assert canonical(fast["msg"]) == canonical(reference["msg"])
    assert fast["username"] == reference["username"]

    for key in GENERATED_KEYS:
        fast[key] = reference[key]
    assert fedmsg.encoding.dumps(fast) == fedmsg.encoding.dumps(reference)


def publish_without_modname(publish, topic):
    """Publish from this module without a modname: both libraries must guess 'oracle'."""
    publish(topic=topic, msg={"from": "oracle"})


def fedmsg_init_error(directory, config, **kw):
    """Run fedmsg.init(**kw) on a config file holding ``config``; return its error.

    Returns (exception type, message), or None when init succeeded (the
    context is then closed again).  fedmsg leaves its ZeroMQ context and
    socket open when init fails; they are collected here, with their
    ResourceWarnings silenced, so that they cannot surface in a later test.
    """
    path = directory / "fedmsg-oracle-init.py"
    path.write_text("config = %r\n" % (config,))
    close_fedmsg()
    fedmsg.config.load_config(filenames=[str(path)], invalidate_cache=True)
    kw.setdefault("post_init_sleep", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            fedmsg.init(**kw)
        except Exception as exc:  # reported to the caller, which compares it
            error = (type(exc), str(exc))
        else:
            error = None
        close_fedmsg()
        gc.collect()
    return error


def fedmsg_publish_error(directory, config, **kw):
    """fedmsg.init(**kw), then one publish; return the publish's (type, message) or None."""
    path = directory / "fedmsg-oracle-publish.py"
    path.write_text("config = %r\n" % (config,))
    close_fedmsg()
    fedmsg.config.load_config(filenames=[str(path)], invalidate_cache=True)
    kw.setdefault("post_init_sleep", 0)
    fedmsg.init(**kw)
    try:
        fedmsg.publish(topic="x", msg={}, modname="oracle")
    except Exception as exc:  # reported to the caller, which compares it
        return (type(exc), str(exc))
    finally:
        close_fedmsg()
    return None

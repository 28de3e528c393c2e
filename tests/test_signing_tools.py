"""Signing in the tools: fastfedmsg-tail --validate, fastfedmsg-relay --sign,
and tail_messages with validate_signatures=True.

The CA, certificates and CRL come from tests/pki.py through test_crypto's
fixtures; real fedmsg 1.1.7 (fedmsg.crypto.validate) is the oracle for what
the signing relay forwards.  Tools run as subprocesses on free loopback
ports, with timeouts, and are killed in teardown; readiness is shown by
probes, never by sleeping.
"""

import json
import queue
import signal
import subprocess
import sys
import threading
import time

import fedmsg.crypto
import pytest

import fastfedmsg
from conftest import free_port, write_config
from fastfedmsg import crypto
from test_crypto import (  # noqa: F401 - pki and certnames are fixtures
    SVC_NAME,
    certnames,
    common_name,
    fastfedmsg_init,
    fedmsg_validate,
    pki,
)
from test_relay import (  # noqa: F401 - processes and sockets are fixtures
    STOPPED,
    address,
    connect_through,
    processes,
    sockets,
    start_fast_relay,
)
from test_tools import (  # noqa: F401 - start_tool is a fixture
    RUN_TIMEOUT,
    LineReader,
    start_tool,
    tool_command,
    tool_env,
)

pytestmark = pytest.mark.integration

RELAY_CN = "relay.example.com"
SVC_CN = "svc-host.example.com"


def unsign(envelope):
    """Make a signed envelope what an unsigned publisher sends."""
    del envelope["signature"], envelope["certificate"], envelope["crypto"]


def tamper(envelope):
    envelope["msg"]["n"] = 666


def wait_for_printed_probe(lines, publish_probe, timeout=15.0):
    """Publish probes until tail prints one; then it is connected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish_probe()
        line = lines.readline(0.05)
        if line is not None:
            return json.loads(line)
    pytest.fail("tail printed nothing within %.0f s" % timeout)


# -- fastfedmsg-tail --validate ----------------------------------------------------

def test_tail_validate_marks_signed_messages_valid_and_others_invalid(
        pki, certnames, port, config_dir, start_tool):
    write_config(config_dir, **pki.config())  # what tail checks against
    fastfedmsg_init(pki, certnames, port)     # a fastfedmsg publisher that signs
    tail = start_tool("tail", "--validate", "--endpoint", "tcp://127.0.0.1:%d" % port,
                      "--timeout", 20)
    lines = LineReader(tail)
    probe = wait_for_printed_probe(
        lines, lambda: fastfedmsg.publish(topic="probe", msg={}, modname="tests"))
    assert probe["valid"] is True, probe

    fastfedmsg.publish(topic="signed", msg={"n": 1}, modname="tests")
    fastfedmsg.publish(topic="unsigned", msg={"n": 2}, modname="tests", pre_fire_hook=unsign)
    fastfedmsg.publish(topic="tampered", msg={"n": 3}, modname="tests", pre_fire_hook=tamper)

    printed = {}
    while len(printed) < 3:
        line = lines.readline(10)
        assert line is not None, "tail stopped printing"
        record = json.loads(line)
        assert set(record) == {"valid", "reason", "message"}
        topic = record["message"]["topic"].rsplit(".", 1)[-1]
        if topic != "probe":
            printed[topic] = record

    assert printed["signed"]["valid"] is True
    assert printed["signed"]["reason"] is None
    assert printed["signed"]["message"]["msg"] == {"n": 1}
    assert common_name(printed["signed"]["message"]) == SVC_CN
    assert printed["unsigned"]["valid"] is False
    assert "not signed" in printed["unsigned"]["reason"]
    assert printed["tampered"]["valid"] is False
    assert "signature does not match" in printed["tampered"]["reason"]
    assert printed["tampered"]["message"]["msg"] == {"n": 666}


def test_tail_validate_without_a_readable_ca_exits_2_naming_it(config_dir, tmp_path):
    missing = tmp_path / "no-such-ca.crt"
    write_config(config_dir, ca_cert_location=str(missing), crl_location=None)

    result = subprocess.run(tool_command("tail", "--validate", "--endpoint",
                                         "tcp://127.0.0.1:%d" % free_port(), "--timeout", 0.1),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            env=tool_env())

    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "ca_cert_location" in result.stderr
    assert "Traceback" not in result.stderr


# -- fastfedmsg-relay --sign -------------------------------------------------------

def relay_config(config_dir, pki, certnames, **extra):
    """Signing keys in the config the relay reads (FEDMSG_CONFIG)."""
    write_config(config_dir, endpoints={}, **pki.config(certnames=certnames, **extra))


def test_signing_relay_output_validates_with_fedmsg_and_fastfedmsg(
        pki, certnames, config_dir, processes, subscriber_factory):
    relay_config(config_dir, pki, certnames)
    relay_in, relay_out = address(free_port()), address(free_port())
    relay = start_fast_relay(processes, relay_in, relay_out, "--sign")
    # An unsigned fastfedmsg publisher in active mode, as fedmsg-logger would be.
    fastfedmsg.init(active=True, relay_inbound=relay_in, sign_messages=False,
                    zmq_linger=0, post_init_sleep=0, active_connect_timeout=10)
    subscriber = subscriber_factory(relay_out)
    subscriber.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))

    body = {"text": "naïve ☃", "n": [1, 2.5, None], "nested": {"b": 1, "a": True}}
    fastfedmsg.publish(topic="relayed", msg=body, modname="tests")
    topic, message = subscriber.recv_json(timeout=10)

    check_config = pki.config()
    assert topic == message["topic"].encode() == b"org.fedoraproject.dev.tests.relayed"
    assert message["msg"] == body
    assert message["crypto"] == "x509"
    assert common_name(message) == RELAY_CN
    assert fedmsg_validate(message, **check_config)
    assert fedmsg.crypto.validate_signed_by(dict(message), RELAY_CN, **check_config)
    assert crypto.Validator(check_config).check(message) is None
    assert crypto.validate_signed_by(message, RELAY_CN, **check_config)
    assert any("signing with" in line and "signing_relay" in line for line in relay.lines)


def test_signing_relay_resigns_signed_messages_and_drops_unsignable_ones(
        pki, certnames, config_dir, processes, sockets):
    relay_config(config_dir, pki, certnames)
    relay_in, relay_out = address(free_port()), address(free_port())
    relay = start_fast_relay(processes, relay_in, relay_out, "--sign")
    producer, subscriber, probes_sent = connect_through(relay_in, relay_out, sockets)
    service_signed = crypto.Signer(pki.config(certnames=certnames, name=SVC_NAME)).encode(
        {"topic": "org.fedoraproject.dev.svc.hop", "msg": {"hop": 1}, "i": 1})

    producer.send_multipart([b"org.fedoraproject.dev.bad.text", b"not json at all"])
    producer.send_multipart([b"org.fedoraproject.dev.bad.list", b"[1, 2, 3]"])
    producer.send_multipart([b"org.fedoraproject.dev.svc.hop", service_signed])
    topic, message = subscriber.recv_json(timeout=10)

    # The unsignable messages never arrive; the next one does, signed by the relay.
    assert topic == b"org.fedoraproject.dev.svc.hop"
    assert message["msg"] == {"hop": 1}
    assert common_name(message) == RELAY_CN
    assert fedmsg_validate(message, **pki.config())
    assert not subscriber.socket.poll(100)

    assert relay.stop(signal.SIGTERM) == 0
    warning = relay.wait_for_line("could not sign")
    assert "WARNING" in warning and "bad.text" in warning
    stop = relay.wait_for_line(STOPPED)
    assert "SIGTERM" in stop
    forwarded = int(stop.split("forwarded ")[1].split()[0])
    assert 2 <= forwarded <= 1 + probes_sent
    assert "dropped 2 that could not be signed" in stop
    assert not any("Traceback" in line for line in relay.lines)


def test_signing_relay_stops_cleanly_on_sigint(pki, certnames, config_dir, processes):
    relay_config(config_dir, pki, certnames)
    relay = start_fast_relay(processes, address(free_port()), address(free_port()), "--sign")

    assert relay.stop(signal.SIGINT) == 0
    assert "SIGINT" in relay.wait_for_line(STOPPED)
    assert not any("Traceback" in line for line in relay.lines)


@pytest.mark.parametrize("problem", ["no certnames entry", "no certificate file"])
def test_signing_relay_without_its_certificate_exits_2_saying_why(
        pki, certnames, config_dir, problem):
    if problem == "no certnames entry":
        names = {key: value for key, value in certnames.items() if key != "signing_relay"}
        expected = ["signing_relay", "certnames"]
    else:
        names = dict(certnames, signing_relay="absent-host")
        expected = ["signing_relay", "absent-host.key"]
    relay_config(config_dir, pki, names)

    result = subprocess.run(
        [sys.executable, "-m", "fastfedmsg.tools.relay", "--sign",
         "--inbound", address(free_port()), "--outbound", address(free_port())],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, env=tool_env())

    assert result.returncode == 2, result.stderr
    assert "cannot sign" in result.stderr
    for text in expected:
        assert text in result.stderr
    assert "forwarding from" not in result.stderr
    assert "Traceback" not in result.stderr


# -- tail_messages with validate_signatures ----------------------------------------

class ProbingPublisher:
    """A fastfedmsg publisher in its own thread: it publishes a probe every
    20 ms, and in between, in order, each message given to send(), until
    stopped.  Its probes keep tail_messages (which blocks until a message
    comes) from blocking for long in the test's thread."""

    def __init__(self, init):
        self._init = init
        self._outbox = queue.Queue()
        self._stopping = threading.Event()
        self.failure = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def send(self, topic, msg, pre_fire_hook=None):
        self._outbox.put(dict(topic=topic, msg=msg, modname="tests",
                              pre_fire_hook=pre_fire_hook))

    def _run(self):
        try:
            self._init()
            while not self._stopping.is_set():
                try:
                    message = self._outbox.get(timeout=0.02)
                except queue.Empty:
                    message = dict(topic="probe", msg={}, modname="tests")
                fastfedmsg.publish(**message)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc
        finally:
            fastfedmsg.destroy()

    def stop(self):
        self._stopping.set()
        self._thread.join(10)


@pytest.fixture
def probing_publisher():
    made = []

    def make(init):
        made.append(ProbingPublisher(init))
        return made[-1]

    yield make
    for publisher in made:
        publisher.stop()


def short_topic(item):
    return item[2].rsplit(".", 1)[-1]


def tail_until(messages, publisher, wanted, timeout=15.0):
    """Items from the tail_messages generator up to the first on topic ``wanted``."""
    seen = []
    deadline = time.monotonic() + timeout
    for item in messages:
        seen.append(item)
        if short_topic(item) == wanted:
            return seen
        assert time.monotonic() < deadline, "no %r message within %.0f s" % (wanted, timeout)
        assert publisher.failure is None, publisher.failure
    raise AssertionError("tail_messages ended")


def test_tail_messages_with_validate_signatures_skips_invalid_messages(
        pki, certnames, port, config_dir, caplog, probing_publisher):
    endpoint = "tcp://127.0.0.1:%d" % port
    write_config(config_dir, endpoints={SVC_NAME: [endpoint]}, zmq_linger=0,
                 post_init_sleep=0)
    publisher = probing_publisher(lambda: fastfedmsg_init(pki, certnames, port))
    caplog.set_level("WARNING", logger="fastfedmsg.api")
    messages = fastfedmsg.tail_messages(validate_signatures=True, **pki.config())
    try:
        tail_until(messages, publisher, "probe")
        publisher.send("tampered", {"n": 1}, pre_fire_hook=tamper)
        publisher.send("unsigned", {"n": 2}, pre_fire_hook=unsign)
        publisher.send("good", {"n": 3})
        seen = tail_until(messages, publisher, "good")
    finally:
        messages.close()

    assert {short_topic(item) for item in seen} <= {"probe", "good"}  # probes may interleave
    name, got_endpoint, _topic, message = seen[-1]
    assert (name, got_endpoint, message["msg"]) == (SVC_NAME, endpoint, {"n": 3})
    assert fedmsg_validate(message, **pki.config())
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "fastfedmsg.api" and record.levelname == "WARNING"]
    assert any("tampered" in text and "signature does not match" in text
               for text in warnings), warnings
    assert any("unsigned" in text and "not signed" in text for text in warnings), warnings


def test_tail_messages_yields_unsigned_messages_when_validate_signatures_is_unset(
        endpoint_config, probing_publisher):
    publisher = probing_publisher(lambda: fastfedmsg.init(name=endpoint_config["name"]))
    messages = fastfedmsg.tail_messages()
    try:
        seen = tail_until(messages, publisher, "probe")
    finally:
        messages.close()

    assert "signature" not in seen[-1][3]

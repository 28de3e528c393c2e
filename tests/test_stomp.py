"""Publishing over STOMP (zmq_enabled=False) against real brokers.

The shared broker is RabbitMQ's STOMP adapter when it runs (as in CI) and a
coilmq started on a free port otherwise (tests/stomp_broker.py).  Tests that
kill, freeze or restart a broker, or that need it to refuse something RabbitMQ
cannot be made to refuse without reconfiguring it, start coilmq brokers of
their own.
"""

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import fastfedmsg
from fastfedmsg import _core
from fastfedmsg.config import load_config, masked
from fastfedmsg.errors import (BrokerQueueFullError, BrokerRefusedError, BrokerTimeoutError,
                               ConfigError, NoTransportError)
from fastfedmsg.transports.stomp import StompPublisher, parse_stomp_uri

from conftest import free_port, load_corpus, write_config
from stomp_broker import CoilmqBroker, StompSubscriber, shared_broker

pytestmark = pytest.mark.integration

PREFIX = "org.fedoraproject.dev"


@pytest.fixture(scope="module")
def broker():
    found = shared_broker()
    yield found
    found.stop()


@pytest.fixture
def coilmq_factory():
    started = []

    def start(**kw):
        made = CoilmqBroker(**kw)
        started.append(made)
        return made

    yield start
    for made in started:
        made.stop()


@pytest.fixture
def subscribers():
    made = []

    def subscribe(broker, destination, **kw):
        sub = StompSubscriber(broker, destination, **kw)
        made.append(sub)
        return sub

    yield subscribe
    for sub in made:
        sub.close()


@pytest.fixture
def publishers():
    made = []

    def publisher(broker_or_uri, **settings):
        uri = broker_or_uri if isinstance(broker_or_uri, str) else broker_or_uri.uri
        config = {"topic_prefix": "org.fedoraproject", "environment": "dev",
                  "stomp_uri": uri, "stomp_connect_timeout": 5}
        if not isinstance(broker_or_uri, str):
            config.update(stomp_user=broker_or_uri.user, stomp_pass=broker_or_uri.password)
        config.update(settings)
        made.append(StompPublisher(config))
        return made[-1]

    yield publisher
    for publisher in made:
        publisher.close()


def unique_topic(label):
    return "%s.%s" % (label, uuid.uuid4().hex[:12])


def stomp_config(config_dir, broker, **extra):
    config = dict(endpoints={}, zmq_enabled=False, post_init_sleep=0, stomp_uri=broker.uri,
                  stomp_user=broker.user, stomp_pass=broker.password,
                  stomp_destination="/topic/{topic}")
    config.update(extra)
    write_config(config_dir, **config)
    return config


def decoded(frame):
    return json.loads(frame.body)


# -- configuration -------------------------------------------------------------------

def test_zmq_disabled_without_stomp_uri_says_what_to_set(config_dir):
    write_config(config_dir, endpoints={}, zmq_enabled=False, post_init_sleep=0)

    context = fastfedmsg.init()

    assert context.socket is None and context.zmq_context is None
    with pytest.raises(NoTransportError, match="stomp_uri") as caught:
        fastfedmsg.publish(topic="nowhere", msg={}, modname="test")
    assert isinstance(caught.value, AttributeError)  # what fedmsg raises there


def test_stomp_uri_lists_brokers_in_order():
    assert parse_stomp_uri("a.example:61614, b.example,[::1]:6") == [
        ("a.example", 61614), ("b.example", 61613), ("::1", 6)]
    with pytest.raises(ConfigError, match="host:port"):
        parse_stomp_uri("a.example:notaport")


def test_new_keys_are_checked(config_dir):
    with pytest.raises(ConfigError, match="stomp_destination"):
        load_config(endpoints={}, stomp_destination="/topic/{nope}")
    with pytest.raises(ConfigError, match="stomp_queue_limit"):
        load_config(endpoints={}, stomp_queue_limit=-1)
    with pytest.raises(ConfigError, match="stomp_confirm_timeout"):
        load_config(endpoints={}, stomp_confirm_timeout=0)
    config = load_config(endpoints={}, stomp_confirm="true", stomp_pass="s3cret")
    assert config["stomp_confirm"] is True
    assert "s3cret" not in repr(masked(config))


# -- what goes over the wire --------------------------------------------------------

def test_publish_sends_the_zmq_envelope_as_json(config_dir, broker, subscribers):
    topic = unique_topic("envelope")
    stomp_config(config_dir, broker)
    sub = subscribers(broker, "/topic/%s.demo.%s" % (PREFIX, topic))
    seen = []

    context = fastfedmsg.init()
    fastfedmsg.publish(topic=topic, msg={"a": 1, "text": "caf\u00e9"}, modname="demo",
                       pre_fire_hook=seen.append)

    assert context.socket is None and context.zmq_context is None
    frame = sub.wait_for(1)[0]
    assert frame.headers["content-type"] == "application/json"
    assert frame.headers["destination"] == "/topic/%s.demo.%s" % (PREFIX, topic)
    envelope = decoded(frame)
    assert envelope == seen[0]
    # Byte for byte what the ZeroMQ path sends: fedmsg's key order and escaping.
    assert frame.body == _core.encode_json(envelope)
    assert envelope["topic"] == "%s.demo.%s" % (PREFIX, topic)
    assert envelope["msg"] == {"a": 1, "text": "caf\u00e9"}
    assert envelope["i"] == 1 and envelope["username"] == _core.username()


def test_default_destination_is_the_bare_topic(coilmq_factory, subscribers, publishers):
    coilmq = coilmq_factory()
    topic = unique_topic("bare")
    sub = subscribers(coilmq, "%s.demo.%s" % (PREFIX, topic))
    publisher = publishers(coilmq)

    publisher.publish(topic, {"n": 1}, "demo", None)

    assert decoded(sub.wait_for(1)[0])["msg"] == {"n": 1}


SCRIPT = """
import json, sys
import fastfedmsg as fedmsg

corpus = [json.loads(line)["msg"] for line in open(sys.argv[2], encoding="utf-8")]
for seq in range(int(sys.argv[1])):
    fedmsg.publish(topic=sys.argv[3], msg={"seq": seq, "body": corpus[seq % len(corpus)]},
                   modname="loadtest")
print("published")
"""


def test_a_script_publishes_10000_messages_in_order(tmp_path, config_dir, broker, subscribers):
    # The script never calls destroy(): what it published must still arrive.
    count = 10000
    topic = unique_topic("stream")
    stomp_config(config_dir, broker)
    script = tmp_path / "publish_stream.py"
    script.write_text(SCRIPT)
    sub = subscribers(broker, "/topic/%s.loadtest.%s" % (PREFIX, topic))
    corpus_path = pathlib.Path(fastfedmsg.__file__).parent / "data" / "fedora-messages.jsonl"
    corpus = [message["msg"] for message in load_corpus()]
    env = dict(os.environ, FEDMSG_CONFIG=str(config_dir),
               PYTHONPATH=str(pathlib.Path(fastfedmsg.__file__).parent.parent))

    done = subprocess.run([sys.executable, str(script), str(count), str(corpus_path), topic],
                          env=env, capture_output=True, text=True, timeout=90)

    assert done.returncode == 0, done.stderr
    frames = sub.wait_for(count, timeout=60, quiet=10)
    assert len(sub.wait_quiet(0.3)) == count
    for seq, frame in enumerate(frames):
        envelope = decoded(frame)
        assert envelope["msg"] == {"seq": seq, "body": corpus[seq % len(corpus)]}
        assert envelope["i"] == seq + 1
        assert envelope["topic"] == "%s.loadtest.%s" % (PREFIX, topic)
        assert frame.body == _core.encode_json(envelope)


def test_publish_many_keeps_order_in_both_modes(broker, subscribers, publishers):
    for confirm in (False, True):
        topic = unique_topic("many")
        sub = subscribers(broker, "/topic/%s.demo.%s" % (PREFIX, topic))
        publisher = publishers(broker, stomp_destination="/topic/{topic}", stomp_confirm=confirm)

        sent = publisher.publish_many([(topic, {"seq": seq}) for seq in range(2000)], "demo")

        assert sent == 2000
        frames = sub.wait_for(2000)
        assert [decoded(frame)["msg"]["seq"] for frame in frames] == list(range(2000))


# -- refusals --------------------------------------------------------------------

@pytest.fixture(params=["shared", "coilmq"])
def refusing_broker(request, broker, coilmq_factory):
    """RabbitMQ when it runs; coilmq told to refuse destinations RabbitMQ refuses."""
    if request.param == "shared" and broker.kind == "rabbitmq":
        return broker
    return coilmq_factory(strict_destinations=True, users={"fedmsg": "right-password"})


def test_refused_destination_raises_at_once_naming_broker_and_reason(refusing_broker,
                                                                     publishers):
    publisher = publishers(refusing_broker, stomp_destination="/bogus/{topic}",
                           stomp_confirm_timeout=30)
    started = time.monotonic()

    with pytest.raises(BrokerRefusedError) as caught:
        publisher.publish("refused", {"n": 1}, "demo", None)

    assert time.monotonic() - started < 10, "a refusal must not wait for a timeout"
    error = caught.value
    assert error.refused == "destination"
    assert error.broker == refusing_broker.uri and refusing_broker.uri in str(error)
    assert "/bogus/%s.demo.refused" % PREFIX in str(error)
    assert "destination" in error.reason.lower()
    # Known refused: raised again without a round trip.
    with pytest.raises(BrokerRefusedError):
        publisher.publish("refused", {"n": 2}, "demo", None)


def test_refused_destination_in_confirmed_mode(refusing_broker, publishers):
    publisher = publishers(refusing_broker, stomp_destination="/bogus/{topic}",
                           stomp_confirm=True)

    with pytest.raises(BrokerRefusedError, match=refusing_broker.uri):
        publisher.publish("refused", {"n": 1}, "demo", None)


def test_bad_credentials_raise_at_init_without_showing_the_password(
        refusing_broker, config_dir, caplog):
    password = "Wr0ng pass word"  # coilmq cannot parse a colon in a header value
    stomp_config(config_dir, refusing_broker, stomp_pass=password)
    stomp_logger = logging.getLogger("stomp.py")
    old_level = stomp_logger.level
    stomp_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    try:
        with pytest.raises(BrokerRefusedError) as caught:
            fastfedmsg.init()
    finally:
        stomp_logger.setLevel(old_level)

    assert time.monotonic() - started < 10
    error = caught.value
    assert error.refused == "credentials" and error.broker == refusing_broker.uri
    assert refusing_broker.uri in str(error) and error.reason
    shown = str(error) + "\n".join(record.getMessage() for record in caplog.records)
    assert "sending frame" in shown, "stomp.py's debug log was not captured"
    for leak in ("Wr0ng", "pass word"):
        assert leak not in shown


def test_connect_frame_carries_vhost_and_heartbeat_and_hides_passcode(broker, publishers,
                                                                      caplog):
    stomp_logger = logging.getLogger("stomp.py")
    old_level = stomp_logger.level
    stomp_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        publishers(broker, stomp_heartbeat=2000)
    finally:
        stomp_logger.setLevel(old_level)

    connect = [record.getMessage() for record in caplog.records
               if "sending frame" in record.getMessage() and "CONNECT" in record.getMessage()]
    assert connect, "no CONNECT frame was logged"
    assert "host:/\\n" in connect[0]
    assert "heart-beat:2000,2000" in connect[0]
    assert "passcode:********" in connect[0]
    assert "passcode:%s" % broker.password not in connect[0]


# -- failover, queueing, confirmation ----------------------------------------------------

def test_fails_over_from_a_dead_first_address(coilmq_factory, subscribers, publishers):
    live = coilmq_factory()
    dead = "127.0.0.1:%d" % free_port()
    topic = unique_topic("failover")
    sub = subscribers(live, "/topic/%s.demo.%s" % (PREFIX, topic))
    publisher = publishers("%s,%s" % (dead, live.uri), stomp_destination="/topic/{topic}")

    publisher.publish(topic, {"n": 1}, "demo", None)

    assert publisher.broker == live.uri
    assert decoded(sub.wait_for(1)[0])["msg"] == {"n": 1}


def test_fails_over_to_the_next_broker_when_one_dies(coilmq_factory, subscribers, publishers):
    first, second = coilmq_factory(), coilmq_factory()
    topic = unique_topic("loss")
    destination = "/queue/%s.demo.%s" % (PREFIX, topic)
    sub_first = subscribers(first, destination)
    sub_second = subscribers(second, destination)
    publisher = publishers("%s,%s" % (first.uri, second.uri),
                           stomp_destination="/queue/{topic}", stomp_confirm=True)
    publisher.publish(topic, {"n": 0}, "demo", None)
    assert publisher.broker == first.uri

    first.kill()
    for n in range(1, 6):
        publisher.publish(topic, {"n": n}, "demo", None)

    assert publisher.broker == second.uri
    assert [decoded(frame)["msg"]["n"] for frame in sub_first.wait_for(1)] == [0]
    assert [decoded(frame)["msg"]["n"] for frame in sub_second.wait_for(5)] == [1, 2, 3, 4, 5]


def test_keeps_messages_while_no_broker_answers_up_to_the_limit(
        coilmq_factory, subscribers, publishers):
    port = free_port()
    topic = unique_topic("offline")
    publisher = publishers("127.0.0.1:%d" % port, stomp_destination="/queue/{topic}",
                           stomp_queue_limit=50)
    assert publisher.broker is None

    for n in range(50):
        publisher.publish(topic, {"n": n}, "demo", None)
    with pytest.raises(BrokerQueueFullError, match="stomp_queue_limit"):
        publisher.publish(topic, {"n": 50}, "demo", None)

    broker = coilmq_factory(port=port)
    sub = subscribers(broker, "/queue/%s.demo.%s" % (PREFIX, topic))
    frames = sub.wait_for(50, timeout=30)
    assert [decoded(frame)["msg"]["n"] for frame in frames] == list(range(50))
    publisher.publish(topic, {"n": 51}, "demo", None)
    assert decoded(sub.wait_for(51)[-1])["msg"]["n"] == 51


def wait_until_stopped(pid, timeout=5.0):
    # kill() returns before the signal took effect; the broker could still
    # answer a frame or two.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % pid) as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)  # polling the process state with a deadline
    raise AssertionError("process %d did not stop within %.1f s" % (pid, timeout))


def test_confirmed_publish_times_out_when_the_broker_freezes(coilmq_factory, publishers):
    broker = coilmq_factory()
    publisher = publishers(broker, stomp_destination="/queue/{topic}", stomp_confirm=True,
                           stomp_confirm_timeout=0.5)
    publisher.publish("frozen", {"n": 0}, "demo", None)

    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        wait_until_stopped(broker.process.pid)
        started = time.monotonic()
        with pytest.raises(BrokerTimeoutError, match=broker.uri) as caught:
            publisher.publish("frozen", {"n": 1}, "demo", None)
        assert 0.4 < time.monotonic() - started < 5
        assert caught.value.unconfirmed == 1
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("batch", [1, 100], ids=["publish", "publish_many"])
def test_confirmed_stream_survives_a_broker_restart(batch, coilmq_factory, subscribers,
                                                    publishers):
    """Kill -9 and restart the broker mid-stream; every message arrives.

    coilmq keeps queues in memory, so a restart loses whatever it held.  What
    the publisher guarantees is that every message publish() returned for was
    confirmed by a broker, and messages unconfirmed at the loss are sent again
    to the restarted one.  coilmq confirms a SEND only after handing it to a
    connected subscriber, so with the subscriber consuming concurrently (and
    reconnecting after the restart) a message is lost exactly when the
    publisher loses it.  Asserted: every sequence number arrives at least
    once, first arrivals are in publish order, and duplicates (resends of
    messages that arrived but whose receipt died with the broker) are no more
    than were in flight: one with publish(), two windows with publish_many().
    """
    count = 3000
    broker = coilmq_factory()
    topic = unique_topic("restart")
    sub = subscribers(broker, "/queue/%s.demo.%s" % (PREFIX, topic), reconnect=True)
    publisher = publishers(broker, stomp_destination="/queue/{topic}", stomp_confirm=True,
                           stomp_confirm_timeout=30)
    failures = []

    def stream():
        try:
            for start in range(0, count, batch):
                if batch == 1:
                    publisher.publish(topic, {"seq": start}, "demo", None)
                else:
                    publisher.publish_many([(topic, {"seq": seq})
                                            for seq in range(start, start + batch)], "demo")
        except Exception as exc:  # reported by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    sub.wait_for(count // 3, timeout=60)
    broker.restart()
    thread.join(90)

    assert not thread.is_alive() and not failures, failures
    assert sub.connections >= 2, "the subscriber never saw the restart"
    frames = sub.wait_for(count, timeout=30, quiet=10)
    seqs = [decoded(frame)["msg"]["seq"] for frame in frames]
    first_arrivals = list(dict.fromkeys(seqs))
    assert first_arrivals == list(range(count))
    assert len(seqs) - count <= (1 if batch == 1 else 2 * batch)


def test_signed_messages_over_stomp_pass_fedmsgs_check(tmp_path, config_dir, broker,
                                                       subscribers):
    import fedmsg.crypto

    from pki import Pki

    pki = Pki(tmp_path / "pki")
    pki.issue("svc-host", "svc-host.example.com")
    topic = unique_topic("signed")
    stomp_config(config_dir, broker, name="svc.test", sign_messages=True,
                 **pki.config(certnames={"svc.test": "svc-host"}))
    sub = subscribers(broker, "/topic/%s.demo.%s" % (PREFIX, topic))

    fastfedmsg.init()
    fastfedmsg.publish(topic=topic, msg={"signed": True}, modname="demo")

    message = decoded(sub.wait_for(1)[0])
    assert message["crypto"] == "x509" and message["msg"] == {"signed": True}
    assert fedmsg.crypto.validate(message, **pki.config())


def test_tls_with_a_client_certificate(tmp_path, coilmq_factory, subscribers, publishers):
    from stomp_broker import TlsFrontend, make_tls_files

    broker = coilmq_factory()
    tls = make_tls_files(str(tmp_path))
    frontend = TlsFrontend(broker, tls)
    try:
        topic = unique_topic("tls")
        sub = subscribers(broker, "/topic/%s.demo.%s" % (PREFIX, topic))
        publisher = publishers(frontend.uri, stomp_destination="/topic/{topic}",
                               stomp_ssl_crt=tls["client_crt"], stomp_ssl_key=tls["client_key"],
                               stomp_ssl_ca=tls["ca_crt"], stomp_confirm=True)

        for n in range(20):
            publisher.publish(topic, {"n": n}, "demo", None)

        assert publisher.broker == frontend.uri
        assert [decoded(frame)["msg"]["n"] for frame in sub.wait_for(20)] == list(range(20))
        assert ((("commonName", "fedmsg client"),),) in frontend.handshakes

        # stomp.py alone would not notice that a TLS broker went away.
        frontend.stop()
        deadline = time.monotonic() + 5
        while publisher.broker is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the publisher's state with a deadline
        assert publisher.broker is None
    finally:
        frontend.stop()

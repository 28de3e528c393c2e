"""Micro-benchmarks of the hot path (pytest-benchmark): encoding a body,
building a topic, building an envelope, one publish call.

The normal suite runs them with --benchmark-disable, which calls each timed
function once; run ``pytest tests/test_benchmarks_micro.py --benchmark-enable``
for the timings.  Either way every test checks that what it timed is right:
the bytes against real fedmsg's encoder, the topic against fedmsg's rule,
every published message as received by a real subscriber.  Speed is never
asserted here; ``python -m benchmarks`` reports it against targets.
"""

import json
import re
import time

import fedmsg.encoding
import pytest
import zmq

import fastfedmsg
from fastfedmsg import _core
from conftest import load_corpus

MSG_ID = re.compile(r"^\d{4}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def typical_message(corpus):
    """A real body of typical size (200-400 bytes) whose keys already stand in
    sorted order, so that fastfedmsg writes it byte for byte as fedmsg does."""
    for record in corpus:
        body = record["msg"]
        reference = fedmsg.encoding.dumps(body).encode("utf-8")
        if 200 <= len(reference) <= 400 and _core.encode_json(body) == reference:
            return record
    raise AssertionError("the corpus holds no ASCII body of 200-400 bytes")


def split_topic(full_topic):
    parts = full_topic.split(".")
    return parts[3], ".".join(parts[4:]) or "unspecified"


def test_encode_one_typical_body(benchmark, typical_message):
    body = typical_message["msg"]

    encoded = benchmark(_core.encode_json, body)

    assert encoded == fedmsg.encoding.dumps(body).encode("utf-8")


def test_encode_the_whole_corpus(benchmark, corpus):
    bodies = [record["msg"] for record in corpus]

    encoded = benchmark(lambda: [_core.encode_json(body) for body in bodies])

    assert len(encoded) == len(bodies)
    for body, data in zip(bodies, encoded):
        # Same value as fedmsg sends; bytes may differ only where the two
        # JSON encoders legitimately differ (raw UTF-8 against \u escapes).
        assert json.loads(data) == json.loads(fedmsg.encoding.dumps(body))


def test_topic_from_the_cache(benchmark):
    publisher = _core.Publisher(None, "org.fedoraproject", "dev", "someone")

    full = benchmark(publisher.full_topic, "branch", "git")

    assert full == "org.fedoraproject.dev.git.branch"


def test_topic_built_afresh(benchmark):
    # A new publisher for every call, so the topic is never in its cache.
    def fresh():
        return (_core.Publisher(None, "org.fedoraproject", "dev", "someone"),), {}

    full = benchmark.pedantic(lambda publisher: publisher.full_topic("update.comment", "bodhi"),
                              setup=fresh, rounds=2000)

    assert full == "org.fedoraproject.dev.bodhi.update.comment"


def test_topic_that_already_has_the_prefix(benchmark):
    publisher = _core.Publisher(None, "org.fedoraproject", "dev", "someone")

    full = benchmark(publisher.full_topic, "prod.git.branch", "org.fedoraproject")

    # fedmsg keeps modname.topic as it is when it starts with the prefix.
    assert full == "org.fedoraproject.prod.git.branch"


def test_build_one_envelope(benchmark, typical_message):
    publisher = _core.Publisher(None, "org.fedoraproject", "dev", "someone")
    modname, topic = split_topic(typical_message["topic"])
    body = typical_message["msg"]

    frame0, envelope, frame1 = benchmark(publisher.build, topic, body, modname)

    full = "org.fedoraproject.dev.%s.%s" % (modname, topic)
    assert frame0 == full.encode("utf-8")
    assert envelope is None
    decoded = json.loads(frame1)
    assert decoded["topic"] == full
    assert decoded["msg"] == body
    assert decoded["i"] == publisher.i
    assert decoded["username"] == "someone"
    assert MSG_ID.match(decoded["msg_id"])
    assert abs(decoded["timestamp"] - time.time()) < 5
    # The frame is exactly fedmsg's canonical encoding of that envelope.
    assert frame1 == fedmsg.encoding.dumps(decoded).encode("utf-8")


@pytest.fixture
def connected_subscriber(endpoint_config):
    """fastfedmsg's context bound on a free port and a SUB socket (no
    high-water mark) that has received a probe; yields the socket."""
    fastfedmsg.init(name=endpoint_config["name"])
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint_config["endpoint"])

    deadline = time.monotonic() + 10
    while True:
        fastfedmsg.publish(topic="probe", msg={}, modname="bench")
        if sock.poll(20):
            break
        assert time.monotonic() < deadline, "the subscriber did not connect within 10 s"
    while sock.poll(100):
        sock.recv_multipart()

    yield sock
    sock.close(linger=0)
    context.term()


def test_one_publish_call(benchmark, connected_subscriber, typical_message):
    publisher = fastfedmsg.current_context().publisher
    modname, topic = split_topic(typical_message["topic"])
    body = typical_message["msg"]
    first_i = publisher.i + 1

    # Fixed rounds, so that every message timed can be received and checked.
    benchmark.pedantic(fastfedmsg.publish, kwargs={"topic": topic, "msg": body,
                                                   "modname": modname},
                       rounds=100, iterations=50, warmup_rounds=1)

    published = publisher.i - first_i + 1
    assert published >= 1
    full = "org.fedoraproject.dev.%s.%s" % (modname, topic)
    for expected_i in range(first_i, first_i + published):
        assert connected_subscriber.poll(5000), "message i=%d never arrived" % expected_i
        frame0, frame1 = connected_subscriber.recv_multipart()
        envelope = json.loads(frame1)
        assert frame0 == full.encode("utf-8")
        assert envelope["i"] == expected_i
        assert envelope["msg"] == body
        assert envelope["topic"] == full
        assert MSG_ID.match(envelope["msg_id"])
    assert not connected_subscriber.poll(50), "more messages arrived than were published"


def test_the_benchmark_loops_count_every_message(port):
    """The floor sender and the compiled receiver the harness relies on:
    every message sent is counted once, probes are dropped, the end marker
    stops the loop, and send times in the bodies become latencies."""
    import threading

    from fastfedmsg import _loops

    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    sub = context.socket(zmq.SUB)
    try:
        for sock in (pub, sub):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        pub.bind("tcp://127.0.0.1:%d" % port)
        sub.connect("tcp://127.0.0.1:%d" % port)
        deadline = time.monotonic() + 10
        while not sub.poll(20):
            pub.send_multipart([b"org.fedoraproject.dev.bench.probe", b"{}"])
            assert time.monotonic() < deadline, "the subscriber did not connect within 10 s"

        results = {}
        receiver = threading.Thread(target=lambda: results.update(_loops.receive_loop(
            sub, 30.0, 5.0, b"bench.probe", b"bench.end", b'"sent_ns":')))
        receiver.start()
        tops = [b"org.fedoraproject.dev.git.branch", b"org.fedoraproject.dev.wiki.edit"]
        bodies = [b'{"msg":{"sent_ns":%d},"n":%d}' % (time.time_ns(), k) for k in range(2)]
        count = 10001

        sent = _loops.send_loop(pub, tops, bodies, count)
        pub.send_multipart([b"org.fedoraproject.dev.bench.end", b""])
        receiver.join(30)

        assert sent == count
        assert not receiver.is_alive()
        assert results["count"] == count
        assert results["end_seen"] and not results["timed_out"]
        expected_bytes = sum(len(tops[k % 2]) + len(bodies[k % 2]) for k in range(count))
        assert results["bytes"] == expected_bytes
        assert results["last_ns"] >= results["first_ns"] > 0
        assert results["stamps_missing"] == 0
        latencies = memoryview(results["latencies_ns"]).cast("q")
        assert len(latencies) == count
        assert min(latencies) >= 0
    finally:
        pub.close(linger=0)
        sub.close(linger=0)
        context.term()

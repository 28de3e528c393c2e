"""The hot path's frame memory (fastfedmsg/_frames.pxi and pinned topic frames).

Envelopes are written into reused blocks that libzmq hands back from its I/O
thread, and topic frames are sent in place from bytes kept for the life of
the process.  A block handed back too early, or a topic frame freed while
queued, would corrupt messages still in flight, so these tests keep many
messages queued while more are built, then check every byte that arrives.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import zmq

import fastfedmsg
from fastfedmsg import _core
from conftest import Subscriber

pytestmark = pytest.mark.integration

#: Body sizes on both sides of every block size (128 B to 8 KiB) and beyond.
SIZES = [0, 20, 100, 127, 128, 200, 1000, 1024, 3000, 8200, 30000, 65000, 65536, 70000,
         200000, 262000, 300000]


def body(index, size):
    """A body whose padding depends on ``index``, so a frame that was reused
    while queued cannot pass for the right one."""
    seed = hashlib.sha256(str(index).encode()).hexdigest()
    return {"n": index, "pad": (seed * (size // len(seed) + 1))[:size]}


def blocks_made():
    return sum(made for _size, made, _idle in _core.frame_memory()["blocks"])


def test_messages_of_every_frame_size_arrive_intact(endpoint_config, subscriber_factory):
    fastfedmsg.init(name=endpoint_config["name"])
    sub = subscriber_factory(endpoint_config["endpoint"])
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", modname="t"))
    first_i = fastfedmsg.stats()["sent"] + 1

    for index, size in enumerate(SIZES):
        fastfedmsg.publish(topic="sized", msg=body(index, size), modname="t")
    for index, size in enumerate(SIZES):
        topic, envelope = sub.recv_json()
        assert topic == b"org.fedoraproject.dev.t.sized"
        assert envelope["msg"] == body(index, size)
        assert envelope["i"] == first_i + index
        assert envelope["topic"] == "org.fedoraproject.dev.t.sized"


def test_frames_reused_while_thousands_are_queued_keep_their_bytes(
        endpoint_config, subscriber_factory):
    # The subscriber reads nothing until everything is published, so the
    # queue holds thousands of messages while their blocks could be reused.
    fastfedmsg.init(name=endpoint_config["name"], high_water_mark=0)
    sub = subscriber_factory(endpoint_config["endpoint"])
    sub.socket.setsockopt(zmq.RCVHWM, 0)
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", modname="t"))
    first_i = fastfedmsg.stats()["sent"] + 1

    count = 6000
    sizes = [SIZES[k % len(SIZES)] % 20000 for k in range(count)]
    for index in range(count):
        # Many topics too: each has its own pinned frame.
        fastfedmsg.publish(topic="t%d" % (index % 97), msg=body(index, sizes[index]),
                           modname="reuse")

    for index in range(count):
        topic, envelope = sub.recv_json(timeout=10)
        assert topic == ("org.fedoraproject.dev.reuse.t%d" % (index % 97)).encode()
        assert envelope["msg"] == body(index, sizes[index]), "message %d was altered" % index
        assert envelope["i"] == first_i + index


def test_a_subscriber_that_keeps_up_reuses_the_same_few_blocks(
        endpoint_config, subscriber_factory):
    fastfedmsg.init(name=endpoint_config["name"], high_water_mark=50, on_full="block",
                    send_timeout=5000)
    sub = subscriber_factory(endpoint_config["endpoint"])
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", modname="t"))
    payload = body(1, 900)
    before = blocks_made()

    received = 0
    for _round in range(40):
        for _ in range(500):
            fastfedmsg.publish(topic="steady", msg=payload, modname="t")
        while received < (_round + 1) * 500:
            sub.recv(timeout=10)
            received += 1

    # 20,000 envelopes, with at most ~50 queued at a time: blocks come back
    # and are used again instead of being allocated per message.
    assert blocks_made() - before < 2000


def test_idle_blocks_are_bounded_after_a_burst(endpoint_config, subscriber_factory):
    fastfedmsg.init(name=endpoint_config["name"], high_water_mark=0)
    sub = subscriber_factory(endpoint_config["endpoint"])
    # A small receive queue and buffer: while the test publishes, most of the
    # burst waits in the publisher's queue, each message in its own block.
    sub.socket.setsockopt(zmq.RCVHWM, 10)
    sub.socket.setsockopt(zmq.RCVBUF, 65536)
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", modname="t"))

    # 1000 envelopes of about 6 KiB (the 8 KiB blocks) queued at once: 8 MiB
    # in flight, more than may stay idle once they come back.
    payload = body(2, 6000)
    for _ in range(1000):
        fastfedmsg.publish(topic="burst", msg=payload, modname="t")
    for _ in range(1000):
        assert sub.recv_json(timeout=10)[1]["msg"] == payload
    fastfedmsg.destroy()  # with linger: every frame has been handed back

    memory = _core.frame_memory()
    size, made, idle = next(block for block in memory["blocks"] if block[0] == 8192)
    assert made * size > memory["idle_limit"]  # the burst outgrew the bound
    assert idle * size <= memory["idle_limit"] + 64 * size


SCRIPT = textwrap.dedent("""
    import json, sys, zmq
    import fastfedmsg
    from fastfedmsg import _core

    port = int(sys.argv[1])
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect("tcp://127.0.0.1:%d" % port)
    fastfedmsg.init(endpoints={"p": ["tcp://127.0.0.1:%d" % port]}, name="p",
                    post_init_sleep=0, zmq_linger=5000, high_water_mark=0,
                    wait_for_subscribers=(1, 10))

    limit = _core.frame_memory()["pinned_topic_limit"]
    long_name = "x" * 200
    count = limit // 200 + 2000          # more topic bytes than may be pinned
    for k in range(count):
        fastfedmsg.publish(topic="%s.%d" % (long_name, k), msg={"k": k}, modname="pin")
    memory = _core.frame_memory()
    seen = 0
    while seen < count:
        if not sub.poll(10000):
            raise SystemExit("only %d of %d messages arrived" % (seen, count))
        topic, raw = sub.recv_multipart()
        envelope = json.loads(raw)
        expected = "org.fedoraproject.dev.pin.%s.%d" % (long_name, seen)
        assert topic.decode() == expected == envelope["topic"], (topic, seen)
        assert envelope["msg"] == {"k": seen}
        seen += 1
    print(json.dumps({"memory": memory, "count": count, "seen": seen}))
""")


def test_pinned_topic_frames_stop_at_their_budget_and_later_topics_still_arrive(
        tmp_path, port):
    # In a child process: the budget is spent for the life of a process.
    script = tmp_path / "pin.py"
    script.write_text(SCRIPT)
    empty = tmp_path / "fedmsg.d"
    empty.mkdir()
    done = subprocess.run([sys.executable, str(script), str(port)], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, FEDMSG_CONFIG=str(empty)))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    memory = result["memory"]
    assert result["seen"] == result["count"]
    assert 0 < memory["pinned_topic_bytes"] <= memory["pinned_topic_limit"]
    # Topics past the budget were sent by copy, not pinned.
    assert memory["pinned_topics"] < result["count"]

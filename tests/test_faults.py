"""Faults, created for real: slow joiners, full queues, a subscriber that stops
reading or is killed, exit, fork, many threads, init/destroy cycles, bad input
and an unknown user.

Every subscriber is a real SUB socket on 127.0.0.1 (or a real subprocess);
instead of sleeping, tests wait for subscriptions (wait_for_subscribers or
probes) and receive with deadlines.  Subprocesses and forked children run
under a timeout and are killed in teardown.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback

import pytest
import zmq

import fastfedmsg
from fastfedmsg import api, errors
from conftest import Subscriber, free_port, write_config

pytestmark = pytest.mark.integration

#: Generous bound on starting Python and importing fastfedmsg on a busy machine.
STARTUP_S = 15.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def endpoint(port):
    return "tcp://127.0.0.1:%d" % port


def quiet_subscriber(address):
    """A SUB socket that subscribes and then never reads: its queues and the
    kernel's buffers fill up, as a stuck consumer's do."""
    sub = Subscriber(address)
    sub.socket.setsockopt(zmq.RCVHWM, 1)
    return sub


def receive_until_quiet(sub, quiet=0.5, probe=b"probe"):
    """Every non-probe [topic, body] that arrives until ``quiet`` s pass with nothing."""
    return sub.drain(probe_topic=probe, quiet=quiet)


def port_is_free(port):
    """Nothing listens on ``port`` (a TIME_WAIT connection does not count)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("0.0.0.0", port))
        probe.listen()
        return True
    except OSError:
        return False
    finally:
        probe.close()


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


def wait_until(predicate, timeout=10.0, interval=0.01):
    """Poll ``predicate`` until it is true; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def processes():
    """Subprocesses started by a test; killed in teardown if still running."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def python_process(code, processes, **kw):
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)
    processes.append(process)
    return process


# -- slow joiners -----------------------------------------------------------------

def test_init_waits_for_the_subscribers_then_the_first_message_reaches_all(
        endpoint_config, subscriber_factory):
    # The subscribers connect before anything is bound: they retry on their own.
    subs = [subscriber_factory(endpoint_config["endpoint"]) for _ in range(2)]

    started = time.monotonic()
    context = fastfedmsg.init(name=endpoint_config["name"], wait_for_subscribers=(2, 10))
    waited = time.monotonic() - started
    fastfedmsg.publish(topic="first", msg={"n": 1}, modname="t")

    assert context.subscribers_seen == 2
    assert waited < 5.0
    for sub in subs:
        topic, envelope = sub.recv_json()
        assert topic == b"org.fedoraproject.dev.t.first"
        assert envelope["i"] == 1 and envelope["msg"] == {"n": 1}


def test_wait_for_subscribers_times_out_with_a_clear_error(endpoint_config,
                                                           subscriber_factory):
    subscriber_factory(endpoint_config["endpoint"])

    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        fastfedmsg.init(name=endpoint_config["name"], wait_for_subscribers=(3, 0.5))
    waited = time.monotonic() - started

    error = caught.value
    assert isinstance(error, errors.SubscriberTimeoutError)
    assert (error.expected, error.seen, error.timeout) == (3, 1, 0.5)
    assert "1 of the 3 subscriptions" in str(error) and "0.500 s" in str(error)
    assert 0.45 <= waited < 3.0
    # Nothing is left behind: no context, and the port is free for the next init.
    assert fastfedmsg.current_context() is None
    assert port_is_free(endpoint_config["port"])
    # (A new subscriber: a SUB socket re-sends its subscription after a
    # reconnection only once its owner calls it again.)
    subscriber_factory(endpoint_config["endpoint"])
    fastfedmsg.init(name=endpoint_config["name"], wait_for_subscribers=(1, 10))


def test_post_init_sleep_keeps_its_meaning(endpoint_config):
    started = time.monotonic()
    fastfedmsg.init(name=endpoint_config["name"], post_init_sleep=0.3)

    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("key, value, expected", [
    ("wait_for_subscribers", 2, "a pair (count, timeout_s)"),
    ("wait_for_subscribers", (0, 5), "a whole count >= 1"),
    ("wait_for_subscribers", (1, 0), "seconds > 0"),
    ("wait_for_subscribers", (True, 5), "a whole count >= 1"),
    ("wait_for_subscribers", ("1", 5), "a pair"),
    ("on_full", "wait", "one of 'fedmsg', 'drop', 'block', 'raise'"),
    ("send_timeout", -2, "a whole number >= -1"),
    ("max_message_size", 0, "None or a number of bytes >= 1"),
    ("max_message_size", 1.5, "None or a number of bytes >= 1"),
])
def test_bad_fault_settings_are_config_errors(config_dir, key, value, expected):
    path = write_config(config_dir, endpoints={"svc.host": [endpoint(free_port())]},
                        **{key: value})

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(name="svc.host", post_init_sleep=0)

    error = caught.value
    assert isinstance(error, errors.ConfigError) and error.key == key
    assert expected in str(error) and repr(key) in str(error) and str(path) in str(error)


def test_fault_settings_are_normalised(config_dir):
    write_config(config_dir, endpoints={}, wait_for_subscribers=[2, 3], on_full=" Block ")
    config = fastfedmsg.config.load_config()

    assert config["wait_for_subscribers"] == (2, 3.0)
    assert config["on_full"] == "block"
    assert config["max_message_size"] is None and config["send_timeout"] == 1000


# -- full queues --------------------------------------------------------------------

BIG_BODY = {"blob": "x" * 20000}


def fill_until(predicate, limit=20000):
    """Publish big messages until ``predicate()``; return how many calls were made."""
    for count in range(1, limit + 1):
        fastfedmsg.publish(topic="big", msg=BIG_BODY, modname="t")
        if predicate():
            return count
    raise AssertionError("the queue never filled in %d messages" % limit)


def test_by_default_a_stalled_subscriber_loses_only_its_own_messages(endpoint_config):
    # fedmsg's behaviour, kept by default: one stuck consumer must not cost
    # the others anything.
    stalled = quiet_subscriber(endpoint_config["endpoint"])
    reader = Subscriber(endpoint_config["endpoint"])
    count = 2000
    try:
        # 200, not fewer: libzmq hands write credit back to the sender in
        # batches (every hwm/2 messages read), and the sender only reads its
        # commands now and then, so with a small mark even a reader that
        # keeps up can look full for a moment.  50 lost the reader's
        # messages on a loaded machine.  The stalled subscriber still holds
        # far fewer than 2000 (200 queued plus what the kernel buffers).
        fastfedmsg.init(name=endpoint_config["name"], high_water_mark=200,
                        wait_for_subscribers=(2, 10))
        received = []
        for number in range(count):
            fastfedmsg.publish(topic="big", msg=dict(BIG_BODY, n=number), modname="t")
            # Paced by the reader, so that only the stalled queue fills.
            received.append(json.loads(reader.recv(timeout=10)[1])["msg"]["n"])

        assert received == list(range(count))
        assert len(receive_until_quiet(stalled)) < count
        assert fastfedmsg.stats() == {"sent": count, "dropped": None}
    finally:
        stalled.close()
        reader.close()


def test_drops_at_the_high_water_mark_are_counted(endpoint_config):
    sub = quiet_subscriber(endpoint_config["endpoint"])
    try:
        fastfedmsg.init(name=endpoint_config["name"], high_water_mark=5, on_full="drop",
                        wait_for_subscribers=(1, 10))
        published = fill_until(lambda: api.stats()["dropped"] >= 10)
        stats = api.stats()

        assert stats["sent"] + stats["dropped"] == published
        assert fastfedmsg.current_context().stats() == stats
        # Every message counted as sent arrives whole, in order; no other does.
        frames = receive_until_quiet(sub)
        assert len(frames) == stats["sent"]
        assert all(len(parts) == 2 for parts in frames)
        numbers = [json.loads(parts[1])["i"] for parts in frames]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        # The figures outlive the context, for a script that reports at its end.
        context = fastfedmsg.current_context()
        fastfedmsg.destroy()
        assert context.stats() == stats and api.stats() == {"sent": 0, "dropped": 0}
    finally:
        sub.close()


def test_on_full_raise_sends_nothing_and_keeps_i(endpoint_config):
    sub = quiet_subscriber(endpoint_config["endpoint"])
    try:
        context = fastfedmsg.init(name=endpoint_config["name"], high_water_mark=5,
                                  on_full="raise", wait_for_subscribers=(1, 10))
        with pytest.raises(BufferError) as caught:
            fill_until(lambda: False)
        error = caught.value
        sent, counted = context.stats()["sent"], context.publisher.i

        assert isinstance(error, errors.HighWaterMarkError)
        assert "high_water_mark=5" in str(error) and "on_full='raise'" in str(error)
        assert error.timeout_ms == 0 and error.index is None
        assert counted == sent and context.stats()["dropped"] == 0
        # Nothing half-sent: what arrives is whole and numbered 1..sent.
        frames = receive_until_quiet(sub)
        assert [json.loads(parts[1])["i"] for parts in frames] == list(range(1, sent + 1))
        assert all(len(parts) == 2 for parts in frames)
        # Once there is room again, the next message takes the next i.
        fastfedmsg.publish(topic="after", msg={}, modname="t")
        topic, envelope = sub.recv_json()
        assert topic.endswith(b".after") and envelope["i"] == sent + 1
    finally:
        sub.close()


def test_on_full_raise_in_publish_many_names_the_item_and_gives_back_the_rest(
        endpoint_config):
    # publish_many builds a chunk of messages before it sends them: when one
    # is refused, it and the built ones after it must use no i, so that what
    # arrives is numbered 1..sent with no gap and the next message follows.
    sub = quiet_subscriber(endpoint_config["endpoint"])
    try:
        context = fastfedmsg.init(name=endpoint_config["name"], high_water_mark=5,
                                  on_full="raise", wait_for_subscribers=(1, 10))
        with pytest.raises(errors.HighWaterMarkError) as caught:
            fastfedmsg.publish_many([("big", BIG_BODY)] * 20000, modname="t")
        sent = context.stats()["sent"]

        assert caught.value.index == sent and context.publisher.i == sent
        frames = receive_until_quiet(sub)
        assert [json.loads(parts[1])["i"] for parts in frames] == list(range(1, sent + 1))
        fastfedmsg.publish(topic="after", msg={}, modname="t")
        topic, envelope = sub.recv_json()
        assert topic.endswith(b".after") and envelope["i"] == sent + 1
    finally:
        sub.close()


def test_on_full_block_gives_up_after_send_timeout(endpoint_config):
    sub = quiet_subscriber(endpoint_config["endpoint"])
    try:
        context = fastfedmsg.init(name=endpoint_config["name"], high_water_mark=5,
                                  on_full="block", send_timeout=300,
                                  wait_for_subscribers=(1, 10))
        blocked = []

        def timed_publish():
            started = time.monotonic()
            fastfedmsg.publish(topic="big", msg=BIG_BODY, modname="t")
            blocked.append(time.monotonic() - started)

        with pytest.raises(errors.HighWaterMarkError) as caught:
            for _ in range(20000):
                timed_publish()

        assert caught.value.timeout_ms == 300 and "send_timeout=300 ms" in str(caught.value)
        assert context.stats()["dropped"] == 0
        assert context.publisher.i == context.stats()["sent"]
    finally:
        sub.close()


def test_on_full_block_loses_nothing_with_a_slow_reader(endpoint_config):
    sub = Subscriber(endpoint_config["endpoint"])
    sub.socket.setsockopt(zmq.RCVHWM, 2)
    count = 3000
    received, failures = [], []

    def read():
        try:
            while len(received) < count:
                frames = sub.recv(timeout=20)
                received.append(json.loads(frames[1])["msg"]["n"])
        except BaseException as exc:  # re-raised below
            failures.append(exc)

    try:
        context = fastfedmsg.init(name=endpoint_config["name"], high_water_mark=2,
                                  on_full="block", send_timeout=20000,
                                  wait_for_subscribers=(1, 10))
        reader = threading.Thread(target=read)
        reader.start()
        for n in range(count):
            fastfedmsg.publish(topic="n", msg={"n": n, "pad": "y" * 5000}, modname="t")
        reader.join(60)

        assert not reader.is_alive() and not failures, failures
        assert received == list(range(count))
        assert context.stats() == {"sent": count, "dropped": 0}
    finally:
        sub.close()


def test_a_killed_subscriber_does_not_disturb_the_publisher(endpoint_config, processes,
                                                            subscriber_factory):
    reader = python_process("""
        import zmq
        sub = zmq.Context().socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(%r)
        count = 0
        while True:
            sub.recv_multipart()
            count += 1
            if count == 100:
                print("reading", flush=True)
    """ % endpoint_config["endpoint"], processes)

    context = fastfedmsg.init(name=endpoint_config["name"],
                              wait_for_subscribers=(1, STARTUP_S))
    published = 0

    def publish_some(how_many):
        nonlocal published
        for _ in range(how_many):
            fastfedmsg.publish(topic="stream", msg={"n": published}, modname="t")
            published += 1

    publish_some(100)
    assert reader.stdout.readline() == "reading\n"
    publish_some(500)
    reader.send_signal(signal.SIGKILL)
    assert reader.wait(10) == -signal.SIGKILL
    publish_some(5000)  # mid-stream, into a connection the kernel tears down

    assert context.stats() == {"sent": published, "dropped": None}
    sub = subscriber_factory(endpoint_config["endpoint"])
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))
    fastfedmsg.publish(topic="still.alive", msg={}, modname="t")
    assert sub.recv()[0] == b"org.fedoraproject.dev.t.still.alive"


# -- exit ---------------------------------------------------------------------------

def test_exit_delivers_the_last_message_in_bind_mode(port, processes, subscriber_factory):
    sub = subscriber_factory(endpoint(port))

    producer = python_process("""
        import fastfedmsg
        fastfedmsg.init(name="script.host", endpoints={"script.host": [%r]},
                        wait_for_subscribers=(1, %r))
        fastfedmsg.publish_many([("n", {"n": n}) for n in range(5000)], modname="script")
    """ % (endpoint(port), STARTUP_S), processes)

    received = [json.loads(sub.recv(timeout=STARTUP_S + 5)[1])["msg"]["n"]
                for _ in range(5000)]
    assert producer.wait(30) == 0, producer.stderr.read()
    assert received == list(range(5000))


@pytest.mark.parametrize("linger", [None, 300])
def test_exit_never_hangs_on_a_subscriber_that_stopped_reading(port, processes, linger):
    sub = quiet_subscriber(endpoint(port))
    sub.socket.setsockopt(zmq.RCVBUF, 4096)
    options = {} if linger is None else {"zmq_linger": linger}
    bound_ms = linger if linger is not None else fastfedmsg.config.DEFAULTS["zmq_linger"]
    try:
        producer = python_process("""
            import fastfedmsg, sys
            fastfedmsg.init(name="script.host", endpoints={"script.host": [%r]},
                            wait_for_subscribers=(1, %r), **%r)
            for n in range(400):
                fastfedmsg.publish(topic="big", msg={"blob": "z" * 100000}, modname="s")
            print("published", flush=True)
        """ % (endpoint(port), STARTUP_S, options), processes)

        assert producer.stdout.readline() == "published\n", producer.stderr.read()
        published_at = time.monotonic()
        producer.wait(30)
        exited_after = time.monotonic() - published_at

        assert producer.returncode == 0, producer.stderr.read()
        assert exited_after < bound_ms / 1000.0 + 2.0, (
            "exited %.2f s after its last publish (linger %d ms)" % (exited_after, bound_ms))
    finally:
        sub.close()


# -- fork ---------------------------------------------------------------------------

def in_child(work, timeout=30.0):
    """Run ``work()`` in a child of os.fork(); return what it returns (JSON),
    or raise AssertionError with the child's traceback."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(reading)
            try:
                outcome = {"result": work()}
            except BaseException:
                outcome = {"error": traceback.format_exc()}
            os.write(writing, json.dumps(outcome).encode("utf-8"))
            code = 0
        finally:
            os._exit(code)

    os.close(writing)
    try:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("the forked child hung for %.0f s" % timeout)
            time.sleep(0.01)
        with os.fdopen(reading, "rb") as pipe:
            reading = None
            data = pipe.read()
    finally:
        if reading is not None:
            os.close(reading)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the child failed"
    outcome = json.loads(data)
    if "error" in outcome:
        raise AssertionError("in the child:\n" + outcome["error"])
    return outcome["result"]


def test_fork_child_publishes_on_a_fresh_context(config_dir, subscriber_factory):
    parent_port, child_port = free_port(), free_port()
    write_config(config_dir, zmq_linger=2000, post_init_sleep=0,
                 endpoints={"forks.host": [endpoint(parent_port), endpoint(child_port)]})
    sub = subscriber_factory(endpoint(parent_port))
    sub.socket.connect(endpoint(child_port))
    parent_context = fastfedmsg.init(name="forks.host", wait_for_subscribers=(1, 10))
    fastfedmsg.publish(topic="before.fork", msg={}, modname="t")

    def child():
        inherited = fastfedmsg.current_context()
        with pytest.raises(errors.ForkedContextError) as caught:
            inherited.publisher.publish("direct", {}, "t")
        assert "os.fork()" in str(caught.value)
        fastfedmsg.publish(topic="from.child", msg={"pid": os.getpid()}, modname="t")
        fresh = fastfedmsg.current_context()
        result = {"endpoint": fresh.endpoint, "pid": os.getpid(),
                  "inherited_endpoint": inherited.endpoint}
        fastfedmsg.destroy()  # os._exit skips the exit hook: flush here
        inherited.destroy()  # abandons it; must neither hang nor close the parent's socket
        return result

    result = in_child(child)

    assert result["endpoint"] == "tcp://*:%d" % child_port
    assert result["inherited_endpoint"] == parent_context.endpoint == "tcp://*:%d" % parent_port
    fastfedmsg.publish(topic="after.fork", msg={}, modname="t")
    arrived = {}
    for _ in range(3):
        topic, envelope = sub.recv_json()
        arrived[topic.decode().rsplit(".t.", 1)[1]] = envelope
    assert arrived["before.fork"]["i"] == 1 and arrived["after.fork"]["i"] == 2
    assert arrived["from.child"]["i"] == 1
    assert arrived["from.child"]["msg"] == {"pid": result["pid"]}
    assert fastfedmsg.current_context() is parent_context


def test_fork_child_in_bind_mode_without_a_spare_endpoint_is_told_what_to_do(
        endpoint_config, subscriber_factory):
    sub = subscriber_factory(endpoint_config["endpoint"])
    fastfedmsg.init(name=endpoint_config["name"], wait_for_subscribers=(1, 10))

    def child():
        with pytest.raises(errors.ForkedContextError) as caught:
            fastfedmsg.publish(topic="from.child", msg={}, modname="t")
        return str(caught.value)

    text = in_child(child)

    assert "os.fork()" in text and "active=True" in text
    assert "'%s'" % endpoint_config["name"] in text and "Address already in use" in text
    fastfedmsg.publish(topic="parent.goes.on", msg={}, modname="t")
    assert sub.recv()[0] == b"org.fedoraproject.dev.t.parent.goes.on"


def test_fork_child_in_active_mode_reconnects(config_dir):
    from test_active import ThreadRelay

    relay_address = endpoint(free_port())
    write_config(config_dir, endpoints={}, relay_inbound=relay_address, zmq_linger=2000,
                 post_init_sleep=0)
    relay = ThreadRelay(relay_address)
    try:
        fastfedmsg.init(active=True, wait_for_subscribers=(1, 10))

        def child():
            fastfedmsg.publish(topic="from.child", msg={}, modname="t")
            fastfedmsg.destroy()
            return os.getpid()

        in_child(child)
        fastfedmsg.publish(topic="from.parent", msg={}, modname="t")

        topics = sorted(relay.recv()[0] for _ in range(2))
        assert topics == [b"org.fedoraproject.dev.t.from.child",
                          b"org.fedoraproject.dev.t.from.parent"]
    finally:
        relay.close()


def test_the_exit_hook_in_a_child_leaves_the_parents_context_alone(endpoint_config,
                                                                   subscriber_factory):
    sub = subscriber_factory(endpoint_config["endpoint"])
    fastfedmsg.init(name=endpoint_config["name"], wait_for_subscribers=(1, 10))

    def child():
        from fastfedmsg import context as context_module
        context_module._destroy_open_contexts()  # what atexit runs in the child
        return len(context_module._open_contexts)

    assert in_child(child) == 0
    fastfedmsg.publish(topic="parent.goes.on", msg={}, modname="t")
    assert sub.recv()[0] == b"org.fedoraproject.dev.t.parent.goes.on"


# -- threads and cycles -------------------------------------------------------------------

def test_sixteen_threads_each_with_a_context_lose_nothing_and_release_their_ports(config_dir):
    threads_count, messages = 16, 500
    ports = [free_port() for _ in range(threads_count)]
    write_config(config_dir, post_init_sleep=0, zmq_linger=2000, endpoints={
        "worker%d.host" % index: [endpoint(port)] for index, port in enumerate(ports)})
    sub = Subscriber(endpoint(ports[0]))
    for port in ports[1:]:
        sub.socket.connect(endpoint(port))
    barrier = threading.Barrier(threads_count, timeout=60)
    failures = []
    baseline_fds = open_descriptors()

    def work(index):
        try:
            fastfedmsg.init(name="worker%d.host" % index, wait_for_subscribers=(1, 30))
            barrier.wait()
            for n in range(messages):
                fastfedmsg.publish(topic="burst", msg={"thread": index, "n": n},
                                   modname="worker%d" % index)
            # No destroy(): the context goes when the thread ends.
        except BaseException as exc:  # re-raised in the test thread below
            failures.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads_count)]
    for worker in workers:
        worker.start()
    try:
        seen = {index: [] for index in range(threads_count)}
        for _ in range(threads_count * messages):
            if failures:
                break
            topic, envelope = sub.recv_json(timeout=30)
            seen[envelope["msg"]["thread"]].append((envelope["i"], envelope["msg"]["n"]))
        for worker in workers:
            worker.join(60)
    finally:
        sub.close()

    assert not failures, failures
    assert not any(worker.is_alive() for worker in workers)
    for index in range(threads_count):
        assert seen[index] == [(n + 1, n) for n in range(messages)], index
    assert wait_until(lambda: all(port_is_free(port) for port in ports))
    assert wait_until(lambda: open_descriptors() <= baseline_fds)


def test_a_thousand_init_destroy_cycles_leak_no_descriptor_or_port(endpoint_config):
    def cycle():
        fastfedmsg.init(name=endpoint_config["name"])
        fastfedmsg.publish(topic="cycle", msg={}, modname="t")
        fastfedmsg.destroy()

    for _ in range(10):
        cycle()
    baseline = open_descriptors()

    for _ in range(1000):
        cycle()

    assert open_descriptors() == baseline
    assert port_is_free(endpoint_config["port"])


# -- bad input -----------------------------------------------------------------------

@pytest.fixture
def connected(endpoint_config, subscriber_factory):
    sub = subscriber_factory(endpoint_config["endpoint"])
    fastfedmsg.init(name=endpoint_config["name"], wait_for_subscribers=(1, 10),
                    max_message_size=2000)
    return sub


def assert_next_message_is_consecutive(sub):
    counted = fastfedmsg.current_context().publisher.i
    fastfedmsg.publish(topic="good", msg={}, modname="t")
    topic, envelope = sub.recv_json()
    assert topic.endswith(b".t.good") and envelope["i"] == counted + 1
    assert sub.drain() == []


@pytest.mark.parametrize("modname", [7, ["t"], 1.5, object()])
def test_modname_that_is_not_text(connected, modname):
    with pytest.raises(TypeError) as caught:
        fastfedmsg.publish(topic="x", msg={}, modname=modname)

    assert isinstance(caught.value, errors.InvalidTopicError)
    assert "modname must be a str" in str(caught.value)
    assert type(modname).__name__ in str(caught.value)
    assert_next_message_is_consecutive(connected)


def test_oversized_message_is_refused_before_anything_is_sent(connected):
    sizes = []
    for length in range(1000, 3000, 50):
        try:
            fastfedmsg.publish(topic="sized", msg={"text": "a" * length}, modname="t")
        except ValueError as exc:
            refused, refused_length = exc, length
            break
        frames = connected.recv()
        sizes.append(len(frames[0]) + len(frames[1]))
    else:
        raise AssertionError("max_message_size=2000 never refused a message")

    assert isinstance(refused, errors.MessageTooLargeError)
    assert sizes and max(sizes) <= 2000
    assert 2000 < refused.size <= max(sizes) + 50 + 1 and refused.limit == 2000
    assert "max_message_size=2000" in str(refused) and "nothing was sent" in str(refused)
    with pytest.raises(errors.MessageTooLargeError):  # and through the hook path
        fastfedmsg.publish(topic="sized", msg={"text": "a" * refused_length}, modname="t",
                           pre_fire_hook=lambda envelope: None)
    assert_next_message_is_consecutive(connected)


def test_oversized_item_in_publish_many(connected):
    with pytest.raises(ValueError) as caught:
        fastfedmsg.publish_many([("ok", {}), ("big", {"text": "b" * 5000}), ("never", {})],
                                modname="t")

    assert caught.value.index == 1
    assert isinstance(caught.value.error, errors.MessageTooLargeError)
    assert connected.recv()[0].endswith(b".t.ok")
    assert_next_message_is_consecutive(connected)


# -- an unknown user ----------------------------------------------------------------

def test_publishing_works_for_a_uid_without_a_name(port, subscriber_factory):
    """A container run with an unknown --user: no login name in the environment
    and no passwd entry.  fedmsg's getpass.getuser() raises there.

    The child is forked (and drops to the uid with os.setuid) rather than
    started with exec: the interpreter of the test venv may sit under a
    folder that other uids cannot enter.
    """
    import pwd

    if os.getuid() != 0:
        pytest.fail("this test needs root to switch a child to an unknown uid")
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            break
        uid += 1
    folder = tempfile.mkdtemp(prefix="fastfedmsg-nouser-")
    os.chmod(folder, 0o755)
    sub = subscriber_factory(endpoint(port))

    def child():
        fastfedmsg.destroy()
        for key in ("LOGNAME", "USER", "LNAME", "USERNAME"):
            os.environ.pop(key, None)
        os.environ["FEDMSG_CONFIG"] = folder
        os.setuid(uid)
        with pytest.raises((KeyError, OSError)):  # as fedmsg would fail here
            import getpass
            getpass.getuser()
        fastfedmsg.init(name="nouser.host", endpoints={"nouser.host": [endpoint(port)]},
                        wait_for_subscribers=(1, 10), zmq_linger=2000)
        fastfedmsg.publish(topic="who", msg={"uid": os.getuid()}, modname="t")
        fastfedmsg.destroy()
        return os.getuid()

    try:
        assert in_child(child) == uid
    finally:
        os.rmdir(folder)

    topic, envelope = sub.recv_json()
    assert topic == b"org.fedoraproject.dev.t.who"
    assert envelope["msg"] == {"uid": uid} and envelope["username"] == str(uid)


def test_subscriptions_from_subscribers_that_come_and_go_do_not_pile_up(endpoint_config):
    # The publishing socket is an XPUB: every subscription and last
    # unsubscription is queued for its owner.  Publishing reads them off once
    # a second, so a long-lived producer does not keep them for ever.
    fastfedmsg.init(name=endpoint_config["name"])
    sock = fastfedmsg.current_context().socket
    for _ in range(20):
        sub = Subscriber(endpoint_config["endpoint"])
        assert wait_until(lambda: sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)
        sub.close()

    def drained():
        fastfedmsg.publish(topic="tick", msg={}, modname="t")
        return not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN

    assert wait_until(drained, timeout=5.0, interval=0.05)

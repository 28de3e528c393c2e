"""Active mode: publishing through a relay with active=True.

The relay here is a SUB socket bound in the test process, as fedmsg-relay's
inbound socket is, received from by its own thread: a bound socket only
takes in a new connection (and sends it its subscription) when its owner
calls it, which a real relay does all the time.  tests/test_relay.py runs
the real relays.  Short-lived
producers run as subprocesses, because what matters for them is what happens
when the interpreter exits.
"""

import json
import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import zmq

import fastfedmsg
from fastfedmsg import _core
from fastfedmsg.errors import NoRelayError

from conftest import free_port, write_config

#: Generous bound on starting Python and importing fastfedmsg on a busy machine.
STARTUP_S = 10.0


class ThreadRelay:
    """A bound SUB socket that a background thread keeps receiving from."""

    def __init__(self, address):
        self.received = queue.Queue()
        self._stop = threading.Event()
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.bind(address)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self._socket.poll(20):
                self.received.put(self._socket.recv_multipart())

    def recv(self, timeout=5.0):
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message arrived within %.1f s" % timeout) from None

    def recv_json(self, timeout=5.0):
        frames = self.recv(timeout)
        return frames[0], json.loads(frames[1])

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._socket.close(linger=0)


@pytest.fixture
def relay_factory():
    made = []

    def make(address):
        made.append(ThreadRelay(address))
        return made[-1]

    yield make
    for relay in made:
        relay.close()


@pytest.fixture
def relay_config(config_dir):
    """A config whose relay_inbound is a free port; returns that address."""
    address = "tcp://127.0.0.1:%d" % free_port()
    write_config(config_dir, endpoints={}, relay_inbound=address, zmq_linger=0,
                 post_init_sleep=0)
    return address


def run_producer(code, timeout=30):
    """Run ``code`` in a fresh interpreter; return (completed process, seconds)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - started


def test_active_connects_to_relay_inbound_and_publishes(relay_config, relay_factory):
    relay = relay_factory(relay_config)

    context = fastfedmsg.init(active=True, zmq_linger=321, active_connect_timeout=10)

    assert context.name == "relay_inbound"
    assert context.endpoint == relay_config
    assert context.socket.getsockopt(zmq.LINGER) == 321
    assert isinstance(context.publisher, _core.Publisher)
    assert context.relay_subscribed

    fastfedmsg.publish(topic="hello", msg={"a": 1}, modname="demo")
    topic, envelope = relay.recv_json()
    assert topic == b"org.fedoraproject.dev.demo.hello"
    assert envelope["msg"] == {"a": 1}
    assert envelope["i"] == 1


def test_first_message_after_init_is_not_lost(relay_config, relay_factory):
    """init() returns once the relay has subscribed, so nothing is dropped,
    and it returns well before the bound when the relay answers."""
    relay = relay_factory(relay_config)

    started = time.monotonic()
    fastfedmsg.init(active=True, post_init_sleep=30)
    waited = time.monotonic() - started
    fastfedmsg.publish(topic="first", msg={}, modname="demo")

    assert waited < 5, "init() waited %.1f s although the relay was up" % waited
    assert relay.recv()[0] == b"org.fedoraproject.dev.demo.first"


def test_active_publish_many_uses_the_same_path(relay_config, relay_factory):
    relay = relay_factory(relay_config)
    fastfedmsg.init(active=True, active_connect_timeout=10)

    fastfedmsg.publish_many([{"topic": "t%d" % n, "msg": {"n": n}} for n in range(50)],
                            modname="demo")

    numbers = [relay.recv_json()[1]["msg"]["n"] for _ in range(50)]
    assert numbers == list(range(50))


def test_named_active_context_connects_to_the_address_under_its_name(
        config_dir, relay_factory):
    address = "tcp://127.0.0.1:%d" % free_port()
    write_config(config_dir, endpoints={}, zmq_linger=0, post_init_sleep=0,
                 **{"my.relay": address})
    relay = relay_factory(address)

    context = fastfedmsg.init(active=True, name="my.relay", active_connect_timeout=10)

    assert context.endpoint == address
    fastfedmsg.publish(topic="x", msg={}, modname="demo")
    assert relay.recv()[0] == b"org.fedoraproject.dev.demo.x"


def test_no_relay_address_is_a_key_error_naming_the_key(config_dir):
    write_config(config_dir, endpoints={}, relay_inbound=None, post_init_sleep=0)

    with pytest.raises(KeyError) as caught:
        fastfedmsg.init(active=True)

    assert isinstance(caught.value, NoRelayError)
    text = str(caught.value)
    assert "no relay address is configured" in text
    assert "'relay_inbound'" in text
    assert fastfedmsg.current_context() is None


def test_without_a_relay_init_waits_only_up_to_the_bound(relay_config):
    started = time.monotonic()
    context = fastfedmsg.init(active=True, active_connect_timeout=0.3, post_init_sleep=30)
    waited = time.monotonic() - started

    assert 0.25 <= waited < 2.0
    assert not context.relay_subscribed
    fastfedmsg.publish(topic="nobody", msg={}, modname="demo")  # dropped, no error


def test_post_init_sleep_bounds_the_wait_when_no_timeout_is_set(relay_config):
    started = time.monotonic()
    fastfedmsg.init(active=True, post_init_sleep=0.3)
    waited = time.monotonic() - started

    assert 0.25 <= waited < 2.0


@pytest.mark.integration
def test_short_lived_producer_delivers_its_one_message(relay_config, relay_factory):
    """Publish once and exit without destroy(): the message must arrive."""
    relay = relay_factory(relay_config)

    done, _ = run_producer("""
        import fastfedmsg
        fastfedmsg.init(active=True, relay_inbound=%r, zmq_linger=2000,
                        active_connect_timeout=%r, endpoints={})
        fastfedmsg.publish(topic="bye", msg={"last": True}, modname="script")
    """ % (relay_config, STARTUP_S))

    assert done.returncode == 0, done.stderr
    topic, envelope = relay.recv_json(timeout=5)
    assert topic == b"org.fedoraproject.dev.script.bye"
    assert envelope["msg"] == {"last": True}


@pytest.mark.integration
def test_short_lived_producer_many_messages_all_delivered(relay_config, relay_factory):
    """What is queued at exit is flushed by the exit hook within the linger."""
    relay = relay_factory(relay_config)

    done, _ = run_producer("""
        import fastfedmsg
        fastfedmsg.init(active=True, relay_inbound=%r, zmq_linger=5000,
                        active_connect_timeout=%r, endpoints={})
        fastfedmsg.publish_many([{"topic": "n", "msg": {"n": n}} for n in range(20000)],
                                modname="script")
    """ % (relay_config, STARTUP_S))

    assert done.returncode == 0, done.stderr
    received = [relay.recv_json(timeout=5)[1]["msg"]["n"] for _ in range(20000)]
    assert received == list(range(20000))


@pytest.mark.integration
def test_short_lived_producer_without_relay_exits_promptly(relay_config):
    """No relay: init waits at most its bound, exit at most the linger."""
    baseline, baseline_s = run_producer("import fastfedmsg")
    assert baseline.returncode == 0, baseline.stderr

    done, elapsed = run_producer("""
        import fastfedmsg
        fastfedmsg.init(active=True, relay_inbound=%r, zmq_linger=500,
                        active_connect_timeout=0.5, endpoints={})
        fastfedmsg.publish(topic="lost", msg={}, modname="script")
    """ % relay_config)

    assert done.returncode == 0, done.stderr
    assert elapsed < baseline_s + 0.5 + 0.5 + 2.0, (
        "exited after %.1f s (bare start %.1f s)" % (elapsed, baseline_s))


@pytest.mark.integration
def test_exit_hook_closes_contexts_of_finished_threads(relay_config, relay_factory):
    relay = relay_factory(relay_config)

    done, _ = run_producer("""
        import threading
        import fastfedmsg

        keep = []
        def work():
            keep.append(fastfedmsg.init(active=True, relay_inbound=%r, zmq_linger=2000,
                                        active_connect_timeout=%r, endpoints={}))
            fastfedmsg.publish(topic="from.thread", msg={}, modname="script")
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    """ % (relay_config, STARTUP_S))

    assert done.returncode == 0, done.stderr
    assert relay.recv()[0] == b"org.fedoraproject.dev.script.from.thread"

"""fastfedmsg-relay, and interoperability with fedmsg's own relay and logger.

Every relay runs in a subprocess on free loopback ports and is killed in
teardown.  Readiness is its start line on stderr followed by probes sent
through it until one arrives; nothing here sleeps to let things settle.
"""

import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import zmq

import fastfedmsg
from fastfedmsg.tools import relay as relay_tool

from conftest import Subscriber, free_port, write_config

FEDMSG_BIN = pathlib.Path(sys.executable).parent
STARTED = "fastfedmsg-relay forwarding from"
STOPPED = "fastfedmsg-relay stopped"


def address(port):
    return "tcp://127.0.0.1:%d" % port


class RelayProcess:
    """A relay subprocess whose stderr lines are collected by a thread."""

    def __init__(self, argv, cwd=None, env=None):
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._new_lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)
            self._new_lines.put(line)
        self._new_lines.put(None)

    def wait_for_line(self, text, timeout=20.0):
        """The first stderr line containing ``text``; AssertionError after ``timeout``."""
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if text in line:
                return line
        raise AssertionError("relay printed no line with %r within %.0f s; stderr:\n%s"
                             % (text, timeout, "".join(self.lines)))

    def stop(self, signum=signal.SIGTERM, timeout=10.0):
        """Send ``signum``; return the exit status."""
        self.process.send_signal(signum)
        status = self.process.wait(timeout)
        self._reader.join(5)
        return status

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        self.process.stderr.close()


@pytest.fixture
def processes():
    """Start subprocesses with ``start(argv, ...)``; all are killed in teardown."""
    started = []

    def start(argv, **kw):
        started.append(RelayProcess(argv, **kw))
        return started[-1]

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def sockets():
    """Make loopback sockets with linger 0 that are closed in teardown."""
    made = []

    def make(kind, endpoint, bind=False, topic=None):
        if kind == zmq.SUB:
            made.append(Subscriber(endpoint, topic or b"", bind))
            return made[-1]
        sock = zmq.Context.instance().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        (sock.bind if bind else sock.connect)(endpoint)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


def start_fast_relay(processes, inbound, outbound, *extra, env=None):
    relay = processes([sys.executable, "-m", "fastfedmsg.tools.relay", "--inbound", inbound,
                       "--outbound", outbound, *extra], env=env)
    relay.wait_for_line(STARTED)
    return relay


def connect_through(relay_in, relay_out, sockets, timeout=10.0):
    """A PUB on the relay's inbound side and a SUB on its outbound side,
    proven connected end to end by a probe.  Returns them and the number of
    probes sent."""
    producer = sockets(zmq.PUB, relay_in)
    subscriber = sockets(zmq.SUB, relay_out)
    sent = []

    def probe():
        producer.send_multipart([b"probe", b"{}"])
        sent.append(1)

    subscriber.wait_connected(probe, timeout=timeout)
    return producer, subscriber, len(sent)


def fedmsg_env():
    """The environment for real fedmsg: its config comes from its cwd only."""
    env = dict(os.environ)
    env.pop("FEDMSG_CONFIG", None)
    env.pop("VIRTUAL_ENV", None)
    return env


# -- the relay on its own ------------------------------------------------------------

@pytest.mark.integration
def test_forwards_every_message_unchanged_whatever_its_topic(processes, sockets, config_dir):
    relay_in, relay_out = address(free_port()), address(free_port())
    start_fast_relay(processes, relay_in, relay_out)
    producer, subscriber, _ = connect_through(relay_in, relay_out, sockets)

    messages = [
        [b"org.fedoraproject.prod.git.receive", b'{"msg": {"a": 1}}'],
        [b"org.centos.prod.ci.pipeline.complete", b"[1, 2, 3]"],
        [b"", b"empty topic"],
        [b"\xff\x00binary", bytes(range(256))],
        [b"big", b"x" * 1_000_000],
    ]
    for frames in messages:
        producer.send_multipart(frames)

    assert [subscriber.recv() for _ in messages] == messages


@pytest.mark.integration
def test_logs_start_and_stop_with_the_count_and_exits_zero_on_sigterm(
        processes, sockets, config_dir):
    relay_in, relay_out = address(free_port()), address(free_port())
    relay = start_fast_relay(processes, relay_in, relay_out)
    producer, subscriber, probes_sent = connect_through(relay_in, relay_out, sockets)

    for n in range(100):
        producer.send_multipart([b"count", b"%d" % n])
    assert [subscriber.recv()[1] for _ in range(100)] == [b"%d" % n for n in range(100)]

    assert relay.stop(signal.SIGTERM) == 0
    start = relay.wait_for_line(STARTED)
    assert relay_in in start and relay_out in start
    stop = relay.wait_for_line(STOPPED)
    assert "SIGTERM" in stop
    forwarded = int(stop.split("forwarded ")[1].split()[0])
    # Probes the relay forwarded before the subscriber was attached are
    # counted too; probes dropped before the relay subscribed are not.
    assert 101 <= forwarded <= 100 + probes_sent


@pytest.mark.integration
def test_sigint_stops_cleanly(processes, config_dir):
    relay = start_fast_relay(processes, address(free_port()), address(free_port()))

    assert relay.stop(signal.SIGINT) == 0
    assert "SIGINT" in relay.wait_for_line(STOPPED)
    assert not any("Traceback" in line for line in relay.lines)


@pytest.mark.integration
def test_nothing_bindable_exits_nonzero_naming_each_address(processes, sockets, config_dir):
    busy_in, busy_out = address(free_port()), address(free_port())
    sockets(zmq.PUB, busy_in, bind=True)
    sockets(zmq.PUB, busy_out, bind=True)

    relay = processes([sys.executable, "-m", "fastfedmsg.tools.relay", "--inbound", busy_in,
                       "--outbound", busy_out])
    assert relay.process.wait(20) == 1
    error = relay.wait_for_line("could not bind")
    assert busy_in in error and "Address already in use" in error

    other_busy_out = address(free_port())
    sockets(zmq.PUB, other_busy_out, bind=True)
    relay = processes([sys.executable, "-m", "fastfedmsg.tools.relay",
                       "--inbound", address(free_port()), "--outbound", busy_out,
                       "--outbound", other_busy_out])
    assert relay.process.wait(20) == 1
    error = relay.wait_for_line("could not bind its outbound socket")
    assert busy_out in error and other_busy_out in error
    assert error.count("Address already in use") == 2


@pytest.mark.integration
def test_binds_the_first_free_outbound_endpoint(processes, sockets, config_dir):
    busy_out, free_out = address(free_port()), address(free_port())
    sockets(zmq.PUB, busy_out, bind=True)
    relay_in = address(free_port())

    relay = start_fast_relay(processes, relay_in, busy_out, "--outbound", free_out)

    assert free_out in relay.wait_for_line(STARTED)
    connect_through(relay_in, free_out, sockets)


@pytest.mark.integration
def test_host_not_on_this_machine_binds_the_port_on_every_interface(
        processes, sockets, config_dir):
    port = free_port()
    remote = "tcp://192.0.2.1:%d" % port  # TEST-NET-1: never a local address
    relay_out = address(free_port())

    relay = start_fast_relay(processes, remote, relay_out)

    assert "tcp://*:%d" % port in relay.wait_for_line(STARTED)
    connect_through(address(port), relay_out, sockets)


@pytest.mark.integration
def test_addresses_come_from_the_config_files(processes, sockets, config_dir, tmp_path):
    relay_in, relay_out = address(free_port()), address(free_port())
    write_config(config_dir, relay_inbound=relay_in,
                 endpoints={"relay_outbound": [relay_out]})

    relay = processes([sys.executable, "-m", "fastfedmsg.tools.relay"])
    start = relay.wait_for_line(STARTED)
    assert relay_in in start and relay_out in start
    connect_through(relay_in, relay_out, sockets)

    other = tmp_path / "other"
    other.mkdir()
    other_in, other_out = address(free_port()), address(free_port())
    config_file = write_config(other, relay_inbound=other_in,
                               endpoints={"relay_outbound": other_out})
    from_file = processes([sys.executable, "-m", "fastfedmsg.tools.relay",
                           "--config", str(config_file)])
    start = from_file.wait_for_line(STARTED)
    assert other_in in start and other_out in start


def test_command_line_overrides_the_config(config_dir):
    write_config(config_dir, relay_inbound="tcp://127.0.0.1:1",
                 endpoints={"relay_outbound": ["tcp://127.0.0.1:2"]}, high_water_mark=5)
    args = relay_tool.build_parser().parse_args(
        ["--inbound", "tcp://*:3", "--outbound", "tcp://*:4", "--high-water-mark", "7",
         "--linger", "9", "--io-threads", "2"])

    config = relay_tool.load_relay_config(args)

    assert relay_tool.relay_addresses(config) == (["tcp://*:3"], ["tcp://*:4"])
    assert (config["high_water_mark"], config["zmq_linger"], config["io_threads"]) == (7, 9, 2)


def test_without_relay_outbound_the_fedmsg_default_is_used(config_dir):
    write_config(config_dir, relay_inbound="tcp://127.0.0.1:1", endpoints={})
    config = relay_tool.load_relay_config(relay_tool.build_parser().parse_args([]))

    assert relay_tool.relay_addresses(config) == (["tcp://127.0.0.1:1"],
                                                   [relay_tool.DEFAULT_OUTBOUND])


def test_a_relay_needs_no_config_file(config_dir):
    # config_dir is empty: fedmsg's defaults give both addresses.
    config = relay_tool.load_relay_config(relay_tool.build_parser().parse_args([]))

    assert relay_tool.relay_addresses(config) == (["tcp://127.0.0.1:2001"],
                                                   [relay_tool.DEFAULT_OUTBOUND])


@pytest.mark.integration
def test_no_relay_inbound_exits_2_naming_the_key(processes, config_dir):
    write_config(config_dir, relay_inbound=None, endpoints={})

    relay = processes([sys.executable, "-m", "fastfedmsg.tools.relay"])

    assert relay.process.wait(20) == 2
    assert "'relay_inbound'" in relay.wait_for_line("no relay address is configured")


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        relay_tool.main(["--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config", "--inbound", "--outbound", "--high-water-mark", "--linger",
                   "--io-threads", "SIGTERM"):
        assert option in text


def test_relay_sockets_take_the_high_water_mark(config_dir):
    from fastfedmsg.config import load_config
    config = load_config(endpoints={}, high_water_mark=123, zmq_linger=0)
    relay = relay_tool.Relay([address(free_port())], [address(free_port())], config)
    relay.start()
    try:
        frontend, backend = relay._sockets[:2]
        assert frontend.getsockopt(zmq.RCVHWM) == 123
        assert backend.getsockopt(zmq.SNDHWM) == 123
        stats = relay.statistics()
        assert stats["outbound"]["frames_out"] == 0
    finally:
        relay.stop()


# -- fastfedmsg producers through the relay -----------------------------------------

@pytest.mark.integration
def test_short_lived_fastfedmsg_script_through_the_relay(processes, sockets, config_dir):
    relay_in, relay_out = address(free_port()), address(free_port())
    start_fast_relay(processes, relay_in, relay_out)
    _, subscriber, _ = connect_through(relay_in, relay_out, sockets)

    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import fastfedmsg
        fastfedmsg.init(active=True, relay_inbound=%r, endpoints={},
                        active_connect_timeout=10)
        fastfedmsg.publish(topic="once", msg={"n": 1}, modname="script")
    """ % relay_in)], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    topic, envelope = subscriber.recv_json()
    assert topic == b"org.fedoraproject.dev.script.once"
    assert envelope["msg"] == {"n": 1}


@pytest.mark.integration
def test_producer_exits_within_linger_when_the_relay_stalls(processes, sockets, config_dir):
    """The relay subscribes, then freezes (SIGSTOP): what the producer cannot
    flush is dropped after zmq_linger ms, and the producer exits."""
    relay_in, relay_out = address(free_port()), address(free_port())
    relay = start_fast_relay(processes, relay_in, relay_out)
    script = textwrap.dedent("""
        import sys, time
        import fastfedmsg
        context = fastfedmsg.init(active=True, relay_inbound=%r, endpoints={},
                                  active_connect_timeout=10, zmq_linger=1000)
        assert context.relay_subscribed
        print("subscribed", flush=True)
        sys.stdin.readline()
        fastfedmsg.publish_many([{"topic": "big", "msg": {"x": "y" * 262144}}] * 200)
        print("exiting", time.monotonic(), flush=True)
    """ % relay_in)
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as producer:
        try:
            assert producer.stdout.readline().strip() == "subscribed"
            relay.process.send_signal(signal.SIGSTOP)
            producer.stdin.write("go\n")
            producer.stdin.flush()
            exiting = float(producer.stdout.readline().split()[1])
            producer.wait(30)
            exited = time.monotonic()
        finally:
            relay.process.send_signal(signal.SIGCONT)
            if producer.poll() is None:
                producer.kill()

    assert producer.returncode == 0
    assert exited - exiting < 1.0 + 2.0, "exit took %.1f s with zmq_linger=1000" % (
        exited - exiting)


@pytest.mark.integration
def test_fastfedmsg_active_to_fastfedmsg_relay_to_fastfedmsg_tail(processes, config_dir):
    relay_in, relay_out = address(free_port()), address(free_port())
    start_fast_relay(processes, relay_in, relay_out)
    with subprocess.Popen([sys.executable, "-m", "fastfedmsg.tools.tail", "--endpoint",
                           relay_out, "--timeout", "3"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as tail:
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout],
                                  daemon=True)
        reader.start()
        try:
            fastfedmsg.init(active=True, relay_inbound=relay_in, endpoints={},
                            active_connect_timeout=10)
            deadline = time.monotonic() + 20
            while lines.empty():
                assert time.monotonic() < deadline, "tail printed no probe within 20 s"
                fastfedmsg.publish(topic="probe", msg={}, modname="tailtest")
                time.sleep(0.02)  # pacing between probes, not synchronisation

            for n in range(50):
                fastfedmsg.publish(topic="real", msg={"n": n}, modname="tailtest")
            tail.wait(30)
            reader.join(10)
            errors = tail.stderr.read()
        finally:
            if tail.poll() is None:
                tail.kill()

    assert tail.returncode == 0, errors
    printed = []
    while not lines.empty():
        line = lines.get()
        if line.strip():
            printed.append(json.loads(line))
    real = [envelope for envelope in printed if not envelope["topic"].endswith(".probe")]
    assert [envelope["msg"]["n"] for envelope in real] == list(range(50))
    assert all(envelope["topic"] == "org.fedoraproject.dev.tailtest.real" for envelope in real)


@pytest.mark.integration
def test_producer_survives_a_relay_restart(processes, sockets, config_dir):
    relay_in, relay_out = address(free_port()), address(free_port())
    relay = start_fast_relay(processes, relay_in, relay_out)
    subscriber = sockets(zmq.SUB, relay_out)
    fastfedmsg.init(active=True, relay_inbound=relay_in, endpoints={}, active_connect_timeout=10,
                    zmq_reconnect_ivl=50, zmq_reconnect_ivl_max=200)
    sequence = iter(range(10**9))

    def publish_until_received(timeout=20.0):
        """Publish numbered messages until one arrives; return its number."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fastfedmsg.publish(topic="seq", msg={"n": next(sequence)}, modname="restart")
            if subscriber.socket.poll(10):
                return json.loads(subscriber.socket.recv_multipart()[1])["msg"]["n"]
        raise AssertionError("nothing arrived within %.0f s" % timeout)

    publish_until_received()
    subscriber.drain()

    assert relay.stop(signal.SIGTERM) == 0
    for _ in range(200):  # the relay is down: these may be lost, must not raise
        fastfedmsg.publish(topic="seq", msg={"n": next(sequence)}, modname="restart")

    start_fast_relay(processes, relay_in, relay_out)
    publish_until_received()
    subscriber.drain()

    after = [next(sequence) for _ in range(500)]
    for n in after:
        fastfedmsg.publish(topic="seq", msg={"n": n}, modname="restart")
    received = [subscriber.recv_json()[1]["msg"]["n"] for _ in after]
    assert received == after


# -- real fedmsg on either side ------------------------------------------------------

@pytest.mark.integration
def test_real_fedmsg_logger_through_fastfedmsg_relay(processes, sockets, config_dir, tmp_path):
    relay_in, relay_out = address(free_port()), address(free_port())
    start_fast_relay(processes, relay_in, relay_out)
    _, subscriber, _ = connect_through(relay_in, relay_out, sockets)

    cwd = tmp_path / "fedmsg-cwd"
    cwd.mkdir()
    (cwd / "fedmsg-config.py").write_text("config = %r\n" % {
        "relay_inbound": relay_in, "endpoints": {"relay_outbound": [relay_out]},
        "zmq_enabled": True, "post_init_sleep": 1.0, "sign_messages": False,
        "validate_signatures": False, "environment": "dev",
        "topic_prefix": "org.fedoraproject"})
    before = time.time()
    done = subprocess.run([str(FEDMSG_BIN / "fedmsg-logger"), "--message", "hello relay",
                           "--modname", "interop", "--topic", "check"], cwd=cwd,
                          env=fedmsg_env(), capture_output=True, text=True, timeout=60)
    after = time.time()
    assert done.returncode == 0, done.stderr

    frames = subscriber.recv(timeout=10)
    envelope = json.loads(frames[1])
    assert frames[0] == b"org.fedoraproject.dev.interop.check"
    assert envelope["topic"] == "org.fedoraproject.dev.interop.check"
    assert envelope["msg"] == {"log": "hello relay"}
    assert envelope["i"] == 1
    assert int(before) <= envelope["timestamp"] <= int(after) + 1
    # Unchanged bytes: the body is exactly fedmsg's own encoding of the envelope.
    import fedmsg.encoding
    assert frames[1].decode("utf-8") == fedmsg.encoding.dumps(envelope)


@pytest.mark.integration
def test_fastfedmsg_through_real_fedmsg_relay(processes, sockets, config_dir, tmp_path):
    relay_in, relay_out = address(free_port()), address(free_port())
    cwd = tmp_path / "fedmsg-relay-cwd"
    cwd.mkdir()
    (cwd / "fedmsg-config.py").write_text("config = %r\n" % {
        "relay_inbound": relay_in, "endpoints": {"relay_outbound": [relay_out]},
        "zmq_enabled": True, "validate_signatures": False, "sign_messages": False,
        "high_water_mark": 0, "io_threads": 1, "post_init_sleep": 0.0,
        "moksha.monitoring.socket": None})
    processes([str(FEDMSG_BIN / "fedmsg-relay")], cwd=cwd, env=fedmsg_env())
    # Moksha takes seconds to start on a busy machine.
    _, subscriber, _ = connect_through(relay_in, relay_out, sockets, timeout=60)

    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import fastfedmsg
        fastfedmsg.init(active=True, relay_inbound=%r, endpoints={},
                        active_connect_timeout=10)
        fastfedmsg.publish(topic="via.fedmsg", msg={"ok": True}, modname="interop")
    """ % relay_in)], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    topic, envelope = subscriber.recv_json(timeout=10)
    assert topic == b"org.fedoraproject.dev.interop.via.fedmsg"
    assert envelope["msg"] == {"ok": True}
    assert envelope["topic"] == topic.decode()


@pytest.mark.integration
def test_fastfedmsg_logger_through_fastfedmsg_relay(processes, sockets, config_dir):
    relay_in, relay_out = address(free_port()), address(free_port())
    start_fast_relay(processes, relay_in, relay_out)
    _, subscriber, _ = connect_through(relay_in, relay_out, sockets)
    write_config(config_dir, endpoints={}, relay_inbound=relay_in)

    done = subprocess.run([sys.executable, "-m", "fastfedmsg.tools.logger",
                           "--message", "from the shell"], capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stderr
    topic, envelope = subscriber.recv_json()
    assert topic == b"org.fedoraproject.dev.logger.log"
    assert envelope["msg"] == {"log": "from the shell"}

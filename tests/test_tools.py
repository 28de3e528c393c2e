"""The command-line tools, run as real programs: fastfedmsg-logger, -tail, -config.

Each tool runs as ``python -m fastfedmsg.tools.X`` in a subprocess with a
timeout and is killed in teardown.  The test process plays the other end:
a SUB socket bound where the relay would be (for the logger), a fastfedmsg
publisher (for tail).  Receives poll with a deadline.

On the logger's first message: a SUB socket bound in the test sends its
subscription only when the test thread calls into it, as a relay's poll loop
does, so each logger test starts the logger and then receives; the logger's
active socket (an XPUB) waits for that subscription before publishing, so
the first message is not lost, and the tests assert that it arrives (i == 1).
"""

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

import pytest
import zmq

import fastfedmsg
from fastfedmsg import _core
from conftest import free_port, load_corpus, write_config

pytestmark = pytest.mark.integration

PACKAGE_ROOT = str(pathlib.Path(fastfedmsg.__file__).resolve().parent.parent)
RUN_TIMEOUT = 30


def tool_env(**extra):
    """The environment for a tool: this checkout importable, FEDMSG_CONFIG as set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def tool_command(tool, *args):
    return [sys.executable, "-m", "fastfedmsg.tools." + tool, *map(str, args)]


@pytest.fixture
def start_tool():
    """Start a tool in the background; every one still running is killed at teardown."""
    started = []

    def start(tool, *args, stdin=subprocess.DEVNULL):
        process = subprocess.Popen(tool_command(tool, *args), stdin=stdin,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=tool_env())
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait(timeout=RUN_TIMEOUT)


def run_tool(tool, *args, input=None):
    """Run a tool to the end (killed after RUN_TIMEOUT s); return the CompletedProcess."""
    return subprocess.run(tool_command(tool, *args), input=input, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, env=tool_env())


def finish(process):
    """Wait for a started tool; return (exit status, stdout, stderr) as text."""
    if process.stdin is not None and process.stdin.closed:
        process.stdin = None        # communicate() would flush the closed pipe
    out, err = process.communicate(timeout=RUN_TIMEOUT)
    return process.returncode, out.decode(), err.decode()


class LineReader:
    """Lines of a running tool's stdout, each read with a deadline."""

    def __init__(self, process):
        self.fd = process.stdout.fileno()
        self.buffer = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8")


# -- fastfedmsg-logger -----------------------------------------------------------

@pytest.fixture
def relay(config_dir, subscriber_factory):
    """A SUB socket bound at relay_inbound, as fedmsg-relay binds it, and a
    config naming it (environment prod)."""
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    write_config(config_dir, endpoints={}, relay_inbound=endpoint, environment="prod",
                 zmq_linger=1000)
    return subscriber_factory(endpoint, bind=True)


def receive_all(sub, count, timeout=10.0):
    return [(topic.decode(), json.loads(body))
            for topic, body in (sub.recv(timeout) for _ in range(count))]


def test_logger_message_arrives_first_time_every_time(relay, start_tool):
    # Five separate runs: each one's only message must arrive, so none was
    # dropped while the connection was still being made.
    for run in range(5):
        logger = start_tool("logger", "--message", "hello %d" % run)

        [(topic, envelope)] = receive_all(relay, 1)
        status, _out, err = finish(logger)

        assert status == 0, err
        assert topic == "org.fedoraproject.prod.logger.log"
        assert envelope["msg"] == {"log": "hello %d" % run}
        assert envelope["i"] == 1
        assert envelope["topic"] == topic


def test_logger_sends_each_stdin_line(relay, start_tool):
    logger = start_tool("logger", "--topic", "repo.update", "--modname", "git",
                        stdin=subprocess.PIPE)
    logger.stdin.write(b"first line\n  second line  \nthird\n")
    logger.stdin.close()

    received = receive_all(relay, 3)
    status, _out, err = finish(logger)

    assert status == 0, err
    assert [topic for topic, _ in received] == ["org.fedoraproject.prod.git.repo.update"] * 3
    assert [envelope["msg"] for _, envelope in received] == [
        {"log": "first line"}, {"log": "second line"}, {"log": "third"}]
    assert [envelope["i"] for _, envelope in received] == [1, 2, 3]


def test_logger_json_input_from_stdin(relay, start_tool):
    document = {"a": 1, "nested": {"list": [1, 2.5, None, "é"]}, "big": 2 ** 70}
    logger = start_tool("logger", "--json-input", stdin=subprocess.PIPE)
    logger.stdin.write(json.dumps(document, indent=2).encode())
    logger.stdin.close()

    [(topic, envelope)] = receive_all(relay, 1)
    status, _out, err = finish(logger)

    assert status == 0, err
    assert topic == "org.fedoraproject.prod.logger.log"
    assert envelope["msg"] == document


def test_logger_message_as_json(relay, start_tool):
    logger = start_tool("logger", "--message", '{"a": [1, 2]}', "--json-input")

    [(_topic, envelope)] = receive_all(relay, 1)
    status, _out, err = finish(logger)

    assert status == 0, err
    assert envelope["msg"] == {"a": [1, 2]}


def test_logger_rejects_bad_json_input_before_connecting(relay):
    result = run_tool("logger", "--message", "{'a': 1}", "--json-input")

    assert result.returncode == 1
    assert "--json-input expects one JSON document" in result.stderr
    assert relay.socket.poll(100) == 0


def expected_topic(recorded, environment="prod"):
    """Where the logger must publish a recorded envelope with the test config
    (prefix org.fedoraproject, environment prod), written out by hand."""
    parts = recorded.split(".")
    if recorded.startswith("org.fedoraproject."):
        return ".".join(["org", "fedoraproject", environment] + parts[3:])
    if len(parts) <= 4:          # fedoracollege.content.edit: no prefix, no environment
        return "org.fedoraproject.%s.%s" % (environment, recorded)
    return ".".join(["org", "fedoraproject", environment] + parts[3:])


def test_logger_json_lines_sends_the_whole_corpus(relay, start_tool, tmp_path):
    corpus = load_corpus()
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps(envelope) for envelope in corpus]
    lines.insert(3, json.dumps({"not": "an envelope"}))      # a plain body
    path.write_text("\n".join(lines) + "\n")

    logger = start_tool("logger", "--json-lines", path, "--topic", "note",
                        "--modname", "shell")
    received = receive_all(relay, len(corpus) + 1)
    status, _out, err = finish(logger)

    assert status == 0, err
    assert "sent %d, failed 0" % (len(corpus) + 1) in err
    plain_topic, plain = received.pop(3)
    assert plain_topic == "org.fedoraproject.prod.shell.note"
    assert plain["msg"] == {"not": "an envelope"}
    for envelope, (topic, got) in zip(corpus, received):
        assert topic == expected_topic(envelope["topic"]), envelope["topic"]
        assert got["msg"] == envelope["msg"]
    # Recorded production topics come back unchanged.
    same = [e for e in corpus if e["topic"].startswith("org.fedoraproject.prod.")]
    assert len(same) > 100
    assert all(expected_topic(e["topic"]) == e["topic"] for e in same)


def test_logger_json_lines_reports_bad_lines_and_sends_the_rest(relay, start_tool, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([
        '{"topic": "org.fedoraproject.prod.bodhi.update.comment", "msg": {"n": 1}}',
        '{"this is": not json}',
        '{"n": 2}',
        '{"topic": "nodots", "msg": {"n": 3}}',
        '{"topic": "org.fedoraproject.prod.x.\\ud800", "msg": {"n": 4}}',
        '',
        '{"topic": "io.pagure.prod.pagure.issue.new", "msg": {"n": 5}}',
    ]) + "\n")

    logger = start_tool("logger", "--json-lines", path)
    received = receive_all(relay, 3)
    status, _out, err = finish(logger)

    assert status == 1
    assert [(topic, envelope["msg"]) for topic, envelope in received] == [
        ("org.fedoraproject.prod.bodhi.update.comment", {"n": 1}),
        ("org.fedoraproject.prod.logger.log", {"n": 2}),
        ("org.fedoraproject.prod.pagure.issue.new", {"n": 5}),
    ]
    assert "%s:2: not valid JSON" % path in err
    assert "%s:4: topic 'nodots'" % path in err
    assert "%s:5: cannot publish" % path in err
    assert "sent 3, failed 3" in err
    assert relay.socket.poll(100) == 0


def test_logger_without_a_relay_sends_nothing_and_fails(config_dir):
    write_config(config_dir, endpoints={})
    address = "tcp://127.0.0.1:%d" % free_port()

    started = time.monotonic()
    result = run_tool("logger", "--message", "lost", "--relay", address,
                      "--connect-timeout", "0.3")

    assert result.returncode == 1
    assert "no relay subscribed at %s" % address in result.stderr
    assert time.monotonic() - started < RUN_TIMEOUT


def test_logger_config_and_relay_options(tmp_path, subscriber_factory, start_tool,
                                         monkeypatch):
    monkeypatch.delenv("FEDMSG_CONFIG", raising=False)
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    config = write_config(tmp_path, endpoints={}, topic_prefix="org.example",
                          environment="stg", relay_inbound="tcp://127.0.0.1:1")
    sub = subscriber_factory(endpoint, bind=True)

    logger = start_tool("logger", "--config", config, "--relay", endpoint,
                        "--linger", 500, "--message", "hi")
    [(topic, envelope)] = receive_all(sub, 1)
    status, _out, err = finish(logger)

    assert status == 0, err
    assert topic == "org.example.stg.logger.log"
    assert envelope["msg"] == {"log": "hi"}


def test_logger_needs_no_endpoints_with_a_relay_address(config_dir, subscriber_factory,
                                                         start_tool):
    # An empty config folder: active mode connects to the relay, so no
    # 'endpoints' is needed (fedmsg would refuse to start).
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    sub = subscriber_factory(endpoint, bind=True)

    logger = start_tool("logger", "--relay", endpoint, "--message", "no endpoints")
    [(_topic, envelope)] = receive_all(sub, 1)
    status, _out, err = finish(logger)

    assert status == 0, err
    assert envelope["msg"] == {"log": "no endpoints"}


# -- fastfedmsg-tail -------------------------------------------------------------

class WatchedPublisher:
    """fastfedmsg's compiled publisher on a bound XPUB socket: it sends exactly
    what a fastfedmsg publisher sends, and the XPUB shows each subscription,
    so a test knows when tail is connected without sending probes."""

    def __init__(self):
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.sock.bind(self.endpoint)
        self.publisher = _core.Publisher(self.sock, "org.fedoraproject", "dev", "tester")

    def publish(self, topic, msg, modname):
        self.publisher.publish(topic, msg, modname)

    def wait_for_subscription(self, timeout=15.0):
        """The subscription frame (b'\\x01' + prefix) of the next subscriber."""
        assert self.sock.poll(int(timeout * 1000)), "tail did not subscribe in time"
        return self.sock.recv()

    def close(self):
        self.publisher.close()
        self.sock.close(linger=0)
        self.context.term()


@pytest.fixture
def watched_publisher():
    publisher = WatchedPublisher()
    yield publisher
    publisher.close()


def test_tail_prints_what_fastfedmsg_publishes(endpoint_config, start_tool):
    fastfedmsg.init(name=endpoint_config["name"])
    tail = start_tool("tail", "--endpoint", endpoint_config["endpoint"], "--timeout", 20)
    lines = LineReader(tail)

    # Probe until tail prints one: then it is connected.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        fastfedmsg.publish(topic="probe", msg={"probe": True}, modname="test")
        line = lines.readline(0.05)
        if line is not None:
            break
    else:
        pytest.fail("tail printed nothing within 15 s")
    sent = [{"n": n, "text": "é€"} for n in range(3)]
    for body in sent:
        fastfedmsg.publish(topic="demo.event", msg=body, modname="demo")

    printed = []
    while len(printed) < 3:
        line = lines.readline(10)
        assert line is not None, "tail stopped printing"
        envelope = json.loads(line)
        if envelope["topic"].endswith(".probe"):
            continue
        printed.append(envelope)

    assert [e["msg"] for e in printed] == sent
    assert {e["topic"] for e in printed} == {"org.fedoraproject.dev.demo.demo.event"}
    assert all(set(e) >= {"i", "msg_id", "timestamp", "username"} for e in printed)
    assert [e["i"] for e in printed] == sorted(e["i"] for e in printed)


def test_tail_count_stops_by_itself_with_endpoints_from_config(
        watched_publisher, start_tool, config_dir):
    write_config(config_dir, endpoints={"svc.host": [watched_publisher.endpoint]})
    tail = start_tool("tail", "--count", 3, "--timeout", 20)
    watched_publisher.wait_for_subscription()

    for n in range(3):
        watched_publisher.publish("thing.happened", {"n": n}, "svc")
    status, out, err = finish(tail)

    assert status == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert [e["msg"] for e in printed] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert printed[0]["topic"] == "org.fedoraproject.dev.svc.thing.happened"
    assert printed[0]["username"] == "tester"


def test_tail_timeout_stops_after_silence(watched_publisher, start_tool):
    tail = start_tool("tail", "--endpoint", watched_publisher.endpoint, "--count", 5,
                      "--timeout", 1.5)
    watched_publisher.wait_for_subscription()
    watched_publisher.publish("one", {"n": 1}, "svc")
    watched_publisher.publish("two", {"n": 2}, "svc")

    status, out, err = finish(tail)

    assert status == 1
    assert len(out.splitlines()) == 2
    assert "2 of 5 messages" in err


def test_tail_topic_filter(watched_publisher, start_tool):
    tail = start_tool("tail", "--endpoint", watched_publisher.endpoint,
                      "--topic", "org.fedoraproject.dev.bodhi.", "--count", 2, "--timeout", 20)
    assert watched_publisher.wait_for_subscription() == b"\x01org.fedoraproject.dev.bodhi."

    watched_publisher.publish("build.tag", {"n": 1}, "buildsys")
    watched_publisher.publish("update.request", {"n": 2}, "bodhi")
    watched_publisher.publish("tag", {"n": 3}, "buildsys")
    watched_publisher.publish("update.comment", {"n": 4}, "bodhi")
    status, out, err = finish(tail)

    assert status == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert [(e["topic"], e["msg"]) for e in printed] == [
        ("org.fedoraproject.dev.bodhi.update.request", {"n": 2}),
        ("org.fedoraproject.dev.bodhi.update.comment", {"n": 4}),
    ]


def test_tail_pretty(watched_publisher, start_tool):
    tail = start_tool("tail", "--endpoint", watched_publisher.endpoint, "--count", 1,
                      "--timeout", 20, "--pretty")
    watched_publisher.wait_for_subscription()
    watched_publisher.publish("x", {"b": 1, "a": [1, 2]}, "svc")

    status, out, err = finish(tail)

    assert status == 0, err
    assert json.loads(out)["msg"] == {"a": [1, 2], "b": 1}
    assert out.index('"i"') < out.index('"msg"') < out.index('"topic"')
    assert '\n  "msg": {\n    "a": [' in out


def test_tail_ctrl_c_exits_quietly(watched_publisher, start_tool):
    tail = start_tool("tail", "--endpoint", watched_publisher.endpoint)
    watched_publisher.wait_for_subscription()

    tail.send_signal(signal.SIGINT)
    status, _out, err = finish(tail)

    assert status == 130
    assert "Traceback" not in err


def test_tail_without_endpoints_explains(config_dir):
    write_config(config_dir, endpoints={})

    result = run_tool("tail", "--timeout", 0.1)

    assert result.returncode == 2
    assert "no endpoint to subscribe to" in result.stderr


# -- fastfedmsg-config -----------------------------------------------------------

SECRET_CONFIG = dict(
    endpoints={"svc.host": ["tcp://127.0.0.1:3000"]},
    environment="stg",
    stomp_uri="broker.example:61613",
    stomp_user="fedmsg",
    stomp_pass="hunter2-password",
    stomp_ssl_key="/secret/pki/stomp.key",
    stomp_ssl_crt="/secret/pki/stomp.crt",
    ssldir="/secret/pki/fedmsg",
)


def test_config_prints_merged_config_with_secrets_masked(config_dir):
    write_config(config_dir, **SECRET_CONFIG)

    result = run_tool("config")

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["environment"] == "stg"
    assert shown["endpoints"] == {"svc.host": ["tcp://127.0.0.1:3000"]}
    assert shown["topic_prefix"] == "org.fedoraproject"          # a default, merged in
    assert shown["stomp_user"] == "fedmsg"
    for key in ("stomp_pass", "stomp_ssl_key", "stomp_ssl_crt", "ssldir"):
        assert shown[key] == "********", key
    assert "hunter2" not in result.stdout
    assert "/secret" not in result.stdout


def test_config_masks_secrets_it_does_not_know_by_name(config_dir):
    write_config(config_dir, endpoints={}, secret_key="hunter2-session",
                 stomp_uri="stomp://fedmsg:hunter2-uri@broker.example:61613",
                 plugins={"irc": {"api_token": "hunter2-token", "nickname": "bot"}})

    result = run_tool("config")

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "hunter2" not in result.stdout
    assert shown["secret_key"] == "********"
    assert shown["stomp_uri"] == "stomp://fedmsg:********@broker.example:61613"
    assert shown["plugins"]["irc"] == {"api_token": "********", "nickname": "bot"}


def test_config_key_and_config_option(tmp_path, monkeypatch):
    monkeypatch.delenv("FEDMSG_CONFIG", raising=False)
    path = write_config(tmp_path, **SECRET_CONFIG)

    environment = run_tool("config", "--config", path, "--key", "environment")
    password = run_tool("config", "--config", path, "--key", "stomp_pass")
    endpoints = run_tool("config", "--config", path, "--key", "endpoints")
    missing = run_tool("config", "--config", path, "--key", "no_such_key")

    assert (environment.returncode, environment.stdout) == (0, "stg\n")
    assert (password.returncode, password.stdout) == (0, "********\n")
    assert json.loads(endpoints.stdout) == {"svc.host": ["tcp://127.0.0.1:3000"]}
    assert missing.returncode == 1
    assert "no key 'no_such_key'" in missing.stderr


def test_config_reports_a_broken_file(config_dir):
    (config_dir / "broken.py").write_text("config = {\n")

    result = run_tool("config")

    assert result.returncode == 2
    assert "broken.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_that_exits_is_reported_not_obeyed(config_dir):
    (config_dir / "exits.py").write_text("import sys\nsys.exit(3)\nconfig = {}\n")

    result = run_tool("config")

    assert result.returncode == 2
    assert "exits.py failed at line 2: SystemExit: 3" in result.stderr


@pytest.mark.parametrize("option, value, expected", [
    ("--count", "0", "expected a whole number of messages above 0, found '0'"),
    ("--count", "many", "expected a whole number of messages above 0, found 'many'"),
    ("--timeout", "-5", "expected a number of seconds above 0, found '-5'"),
])
def test_tail_refuses_counts_and_timeouts_that_would_do_nothing(option, value, expected):
    result = run_tool("tail", "--endpoint", "tcp://127.0.0.1:1", option, value)

    assert result.returncode == 2
    assert expected in result.stderr

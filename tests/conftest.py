"""Shared test fixtures: free ports, config files, subscribers that cannot hang.

Every socket here lives on 127.0.0.1, on a port the kernel just handed out,
with linger 0; every receive polls with a deadline.
"""

import json
import os
import pathlib
import socket
import time

import pytest
import zmq

import fastfedmsg

CORPUS = pathlib.Path(fastfedmsg.__file__).parent / "data" / "fedora-messages.jsonl"

# Every child process a test starts must import the fastfedmsg under test.
# `python -m` and `-c` put the working folder first on sys.path, and from the
# top of a checkout that is the source folder, whose core may be built only
# in site-packages; PYTHONSAFEPATH leaves the working folder out and
# PYTHONPATH names the folder this fastfedmsg was imported from.
PACKAGE_PARENT = str(pathlib.Path(fastfedmsg.__file__).resolve().parent.parent)
os.environ["PYTHONSAFEPATH"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_corpus():
    with open(CORPUS, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_config(directory, **config):
    """Write ``config`` as a fedmsg config file in ``directory``; return its path."""
    path = pathlib.Path(directory) / "fastfedmsg-test.py"
    path.write_text("config = %r\n" % (config,))
    return path


class Subscriber:
    """A SUB socket on loopback that receives by polling with a deadline."""

    def __init__(self, endpoint, topic=b"", bind=False):
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        if bind:
            self.socket.bind(endpoint)
        else:
            self.socket.connect(endpoint)

    def recv(self, timeout=5.0):
        """The next [topic, body] frames, or AssertionError after ``timeout`` s."""
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError("no message arrived within %.1f s" % timeout)
        return self.socket.recv_multipart()

    def recv_json(self, timeout=5.0):
        frames = self.recv(timeout)
        return frames[0], json.loads(frames[1])

    def wait_connected(self, send_probe, timeout=10.0, probe_topic=b"probe"):
        """Call ``send_probe()`` until a probe arrives, then drop every probe.

        A PUB socket drops what it sends before the subscription reached it,
        so tests wait for a probe instead of sleeping.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            send_probe()
            if self.socket.poll(20):
                break
        else:
            raise AssertionError("subscriber did not connect within %.1f s" % timeout)
        self.drain(probe_topic)

    def drain(self, probe_topic=b"probe", quiet=0.1):
        """Receive and drop messages whose topic contains ``probe_topic``
        until ``quiet`` seconds pass with nothing; return the others."""
        kept = []
        while self.socket.poll(int(quiet * 1000)):
            frames = self.socket.recv_multipart()
            if probe_topic not in frames[0]:
                kept.append(frames)
        return kept

    def close(self):
        self.socket.close(linger=0)


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """An empty folder named by FEDMSG_CONFIG, so no machine config leaks in."""
    folder = tmp_path / "fedmsg.d"
    folder.mkdir()
    monkeypatch.setenv("FEDMSG_CONFIG", str(folder))
    return folder


@pytest.fixture
def endpoint_config(config_dir, port):
    """A config with one bindable endpoint for name 'test.host'; returns the
    keyword arguments that select it."""
    write_config(config_dir, endpoints={"test.host": ["tcp://127.0.0.1:%d" % port]},
                 zmq_linger=0, post_init_sleep=0)
    return {"name": "test.host", "port": port, "endpoint": "tcp://127.0.0.1:%d" % port}


@pytest.fixture(autouse=True)
def clean_context():
    """Every test starts and ends without a fastfedmsg context in this thread."""
    fastfedmsg.destroy()
    yield
    fastfedmsg.destroy()


@pytest.fixture
def subscriber_factory():
    made = []

    def make(endpoint, topic=b"", bind=False):
        sub = Subscriber(endpoint, topic, bind)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()

"""fastfedmsg-replay: publish real Fedora traffic and check that it arrives intact.

One command, no config file needed: ``fastfedmsg-replay`` binds a
fastfedmsg publisher on a free loopback port, starts a subscriber in another
process (this same module with ``--subscribe``), waits until that subscriber
is connected, publishes every message of the shipped corpus
(fastfedmsg/data/fedora-messages.jsonl, or ``--file``) ``--repeat`` times,
and prints what the subscriber found: messages intact, damaged and missing.
It exits 0 only if every message arrived intact.

Theory of operation
-------------------
Each corpus line is a whole envelope.  Its full topic is split into
(prefix, environment, modname, topic) by fastfedmsg.tools.common.split_topic,
and the body is published with that modname and topic through a publisher
whose topic_prefix and environment are the line's own, so the subscriber
must see the recorded full topic again.  All publishers share the one bound
socket of the context that init() built.  A topic too short to carry an
environment is published as it is (its publisher's prefix is its own first
component, and fedmsg leaves a topic that starts with the prefix alone).

The subscriber reads the same file and expects each (full topic, body) pair
as many times as it occurs.  A message is intact when its topic frame and
its envelope's ``topic`` equal an expected full topic and its decoded ``msg``
equals a body expected on that topic (compared as canonical JSON, so 1 and
1.0 differ); anything else that arrives is damaged; what never arrives is
missing.  Control frames on topics under ``fastfedmsg-replay.control.`` carry
the connection probes and the end marker; one socket keeps them in order, so
the end marker arrives after every message published before it.

The child speaks to its parent on stdout: ``connected`` once the first probe
arrived, then one line of JSON with its counts.
"""

import argparse
import collections
import json
import logging
import os
import pathlib
import select
import subprocess
import sys
import time

import zmq

import fastfedmsg
from fastfedmsg import _core
from fastfedmsg.errors import BindError, FastFedmsgError
from fastfedmsg.tools.common import (
    add_common_arguments,
    configure_logging,
    free_port,
    is_envelope,
    loads,
    read_json_lines,
    split_topic,
)

log = logging.getLogger(__name__)

PROG = "fastfedmsg-replay"
CORPUS = pathlib.Path(__file__).resolve().parent.parent / "data" / "fedora-messages.jsonl"

NAME = "fastfedmsg-replay"
TOPIC_PREFIX = "org.fedoraproject"
ENVIRONMENT = "prod"
CONTROL_PREFIX = b"fastfedmsg-replay.control."
PROBE_TOPIC = CONTROL_PREFIX + b"probe"
END_TOPIC = CONTROL_PREFIX + b"end"
CONNECTED_LINE = "connected"
BIND_ATTEMPTS = 5
DAMAGE_SHOWN = 5


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish the corpus of real Fedora messages with fastfedmsg to a "
                    "subscriber in another process and check that every one arrives intact.")
    parser.add_argument("--file", default=str(CORPUS),
                        help="messages to replay, one JSON envelope a line "
                             "(default: the shipped corpus)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="send the file N times (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="give up after S seconds without progress (default: %(default)s)")
    parser.add_argument("--subscribe", metavar="ENDPOINT",
                        help="be the subscriber: connect to ENDPOINT and check what arrives "
                             "(started by the publishing side)")
    parser.add_argument("--expect", type=int, metavar="N",
                        help="with --subscribe: how many messages to wait for (default: the "
                             "file's messages times --repeat)")
    add_common_arguments(parser)
    return parser


# -- the corpus ------------------------------------------------------------------

class PlannedMessage(collections.namedtuple(
        "PlannedMessage", "line full_topic prefix environment modname topic body")):
    """One corpus line, ready to publish and to check."""


def load_plan(path):
    """Read ``path``; return (planned messages, errors as 'FILE:LINE: reason')."""
    planned, errors = [], []
    for number, value, error in read_json_lines(path):
        if error is None and not is_envelope(value):
            error = "not an envelope: expected an object with 'topic' and 'msg'"
        if error is None:
            try:
                parts = split_topic(value["topic"], TOPIC_PREFIX)
            except ValueError as exc:
                error = str(exc)
        if error is not None:
            errors.append("%s:%d: %s" % (path, number, error))
            continue
        planned.append(PlannedMessage(number, value["topic"], parts.prefix, parts.environment,
                                      parts.modname, parts.topic, value["msg"]))
    return planned, errors


def canonical(body):
    """Text equal for two bodies exactly when they decode to the same JSON.

    The stdlib encoder, not orjson: orjson writes NaN as null, which would
    let a NaN turned into null pass as intact.
    """
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# -- the subscriber (child process) ------------------------------------------------

def subscribe(args):
    """Receive and check messages; print 'connected', then the JSON counts."""
    # Unreadable lines are the publishing side's to report; both skip them.
    planned, _errors = load_plan(args.file)
    expected = collections.Counter()
    for message in planned:
        expected[(message.full_topic, canonical(message.body))] += args.repeat
    expected_topics = {message.full_topic for message in planned}
    total = args.expect if args.expect is not None else len(planned) * args.repeat

    zmq_context = zmq.Context()
    sub = zmq_context.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(args.subscribe)
        counts = _receive(sub, expected, expected_topics, total, args.timeout)
    finally:
        sub.close(linger=0)
        zmq_context.term()

    counts["missing"] = max(0, total - counts["intact"] - counts["damaged"])
    print(json.dumps(counts), flush=True)
    return 0 if counts["intact"] == total and not counts["damaged"] else 1


def _receive(sub, expected, expected_topics, total, timeout):
    counts = {"received": 0, "intact": 0, "damaged": 0, "sent": None, "elapsed": 0.0}
    connected = False
    first = last = None

    while counts["intact"] + counts["damaged"] < total:
        if not sub.poll(int(timeout * 1000)):
            log.warning("nothing arrived for %.1f s; stopping with %d of %d messages",
                        timeout, counts["received"], total)
            break
        topic, *rest = sub.recv_multipart()
        if topic.startswith(CONTROL_PREFIX):
            if topic == PROBE_TOPIC and not connected:
                connected = True
                print(CONNECTED_LINE, flush=True)
            elif topic == END_TOPIC:
                counts["sent"] = loads(rest[-1])["sent"]
                break
            continue

        now = time.monotonic()
        first = first or now
        last = now
        counts["received"] += 1
        problem = _check(topic, rest, expected, expected_topics)
        if problem is None:
            counts["intact"] += 1
        else:
            counts["damaged"] += 1
            if counts["damaged"] <= DAMAGE_SHOWN:
                print("%s: damaged message on %r: %s" % (PROG, topic[:200], problem),
                      file=sys.stderr)

    if first is not None:
        counts["elapsed"] = last - first
    return counts


def _check(topic_frame, rest, expected, expected_topics):
    """None if the message is an expected one (and count it off), else why not."""
    if len(rest) != 1:
        return "expected 2 frames, found %d" % (len(rest) + 1)
    try:
        topic = topic_frame.decode("utf-8")
        envelope = loads(rest[0])
    except (ValueError, UnicodeDecodeError) as exc:
        return "cannot decode: %s" % (exc,)
    if not is_envelope(envelope):
        return "the body is not an envelope with 'topic' and 'msg'"
    if envelope["topic"] != topic:
        return "envelope topic %r differs from the topic frame" % (envelope["topic"],)
    if topic not in expected_topics:
        return "no corpus message has this topic"
    key = (topic, canonical(envelope["msg"]))
    if expected[key] <= 0:
        return "its msg differs from every corpus body on this topic (or came once too often)"
    expected[key] -= 1
    return None


# -- the publisher (parent process) --------------------------------------------------

def replay(args):
    planned, errors = load_plan(args.file)
    for error in errors:
        print("%s: %s; line skipped" % (PROG, error), file=sys.stderr)
    if not planned:
        print("%s: %s holds no message to replay" % (PROG, args.file), file=sys.stderr)
        return 2
    total = len(planned) * args.repeat

    child = None
    try:
        context = _bind()
        endpoint = "tcp://127.0.0.1:%s" % context.endpoint.rsplit(":", 1)[-1]
        child = _start_subscriber(args, endpoint, total)
        lines = ChildLines(child)
        _wait_connected(context.socket, lines, args.timeout)

        started = time.monotonic()
        sent, failures = _publish_all(context, planned, args.repeat)
        publish_time = time.monotonic() - started
        context.socket.send_multipart([END_TOPIC, json.dumps({"sent": sent}).encode()])

        # No deadline here: the child stops by itself after --timeout seconds
        # without a message, and then reports.
        report = lines.readline(None)
        elapsed = time.monotonic() - started
        if report is None:
            raise ReplayError("the subscriber exited (status %s) without a report"
                              % child.wait(timeout=10))
        counts = json.loads(report)
        child.wait(timeout=10)
    except ReplayError as exc:
        print("%s: %s" % (PROG, exc), file=sys.stderr)
        return 1
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        fastfedmsg.destroy()

    for failure in failures[:DAMAGE_SHOWN]:
        print("%s: %s" % (PROG, failure), file=sys.stderr)
    print_summary(args, sent, len(failures), counts, total, publish_time, elapsed)
    ok = (not errors and not failures and counts["intact"] == total
          and counts["damaged"] == 0 and counts["missing"] == 0)
    return 0 if ok else 1


class ReplayError(Exception):
    """The replay could not run (the subscriber did not start or connect)."""


def _bind():
    """init() a context bound on a free loopback port, with no config file."""
    for attempt in range(BIND_ATTEMPTS):
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        try:
            # files=[]: no config file is read, not even a stray ./fedmsg.d.
            return fastfedmsg.init(
                files=[], name=NAME, endpoints={NAME: [endpoint]}, active=False,
                topic_prefix=TOPIC_PREFIX, environment=ENVIRONMENT, post_init_sleep=0,
                high_water_mark=0, zmq_linger=0, sign_messages=False)
        except BindError:
            # Another program took the port between free_port() and bind.
            log.info("port of %s was taken (attempt %d); trying another", endpoint, attempt + 1)
    raise ReplayError("could not bind a free port in %d attempts" % BIND_ATTEMPTS)


def _start_subscriber(args, endpoint, total):
    # -P: `python -m` would otherwise put the working folder first on
    # sys.path, and from the top of a source checkout that folder's unbuilt
    # fastfedmsg would shadow this one; PYTHONPATH below names this one.
    command = [sys.executable, "-P", "-m", "fastfedmsg.tools.replay", "--subscribe", endpoint,
               "--expect", str(total), "--file", args.file, "--repeat", str(args.repeat),
               "--timeout", str(args.timeout)]
    # The child imports this very fastfedmsg, installed or not.
    package_root = str(pathlib.Path(fastfedmsg.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log.debug("starting the subscriber: %s", " ".join(command))
    return subprocess.Popen(command, stdout=subprocess.PIPE, env=env)


def _wait_connected(sock, lines, timeout):
    """Send probes until the child says one arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.send_multipart([PROBE_TOPIC, b"{}"])
        line = lines.readline(0.02)
        if line == CONNECTED_LINE:
            return
        if line is not None or lines.child.poll() is not None:
            raise ReplayError("the subscriber stopped before it connected (exit status %s, "
                              "said %r)" % (lines.child.poll(), line))
    raise ReplayError("the subscriber did not connect within %.1f s" % timeout)


def _publish_all(context, planned, repeat):
    """Publish every planned message ``repeat`` times; return (sent, failures)."""
    username = _core.username()
    publishers = {(TOPIC_PREFIX, ENVIRONMENT): context.publisher}
    work = []
    for message in planned:
        if message.prefix is None:
            key = (message.modname, "")
        else:
            key = (message.prefix, message.environment)
        if key not in publishers:
            publishers[key] = _core.Publisher(context.socket, key[0], key[1], username)
        work.append((publishers[key], message))

    sent, failures = 0, []
    try:
        for _round in range(repeat):
            for publisher, message in work:
                try:
                    publisher.publish(message.topic, message.body, message.modname)
                except (FastFedmsgError, TypeError, ValueError) as exc:
                    failures.append("line %d: cannot publish: %s" % (message.line, exc))
                else:
                    sent += 1
    finally:
        for publisher in publishers.values():
            if publisher is not context.publisher:
                publisher.close()
    return sent, failures


class ChildLines:
    """Lines from a child's stdout, read with a deadline."""

    def __init__(self, child):
        self.child = child
        self.fd = child.stdout.fileno()
        self.buffer = b""

    def readline(self, timeout):
        """The next line without its newline, or None if none came in ``timeout``
        seconds (None: no deadline) or the child closed its stdout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if not select.select([self.fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()


def print_summary(args, sent, failed, counts, total, publish_time, elapsed):
    rate = counts["intact"] / elapsed if elapsed > 0 else 0.0
    print("%s: %s x%d" % (PROG, args.file, args.repeat))
    publish_rate = sent / publish_time if publish_time > 0 else 0.0
    print("  sent %d of %d (%d failed) in %.3f s, %.0f msg/s"
          % (sent, total, failed, publish_time, publish_rate))
    print("  received intact %d, damaged %d, missing %d"
          % (counts["intact"], counts["damaged"], counts["missing"]))
    print("  elapsed %.3f s, %.0f msg/s end to end" % (elapsed, rate))
    verdict = "all %d arrived intact" % total if (
        counts["intact"] == total and not failed) else "NOT all messages arrived intact"
    print("  " + verdict)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be more than 0 seconds")
    configure_logging(PROG, args.verbose)
    try:
        if args.subscribe:
            return subscribe(args)
        return replay(args)
    except OSError as exc:
        print("%s: %s" % (PROG, exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

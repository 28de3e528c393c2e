"""STOMP publishing: fastfedmsg's StompPublisher against a plain stomp.py loop.

Both publish the same Fedora corpus envelopes to the same broker in the same
run: RabbitMQ's STOMP adapter on 127.0.0.1:61613 when it answers, otherwise a
coilmq broker started on a free port (tests/stomp_broker.py).

Each mode is timed twice from the first publish: until the publishing loop
returned ("handed": the client's own cost, what fastfedmsg can change) and
until the broker confirmed it had processed everything ("processed": a
DISCONNECT, or a last SEND, with a receipt after the last message, which is
bounded by the broker's own speed):

* fire and forget: ``StompPublisher.publish`` per message, and
  ``publish_many``, against ``stomp.Connection.send`` per message;
* confirmed: ``publish`` with stomp_confirm=True (a receipt per message,
  returning once confirmed), and ``publish_many`` (receipts pipelined),
  against ``send`` with a receipt header followed by a wait for that receipt.

The stomp.py loop sends bodies encoded before the clock starts; fastfedmsg
builds each envelope (topic, msg_id, timestamp, JSON) inside the timed loop,
so the comparison favours stomp.py.  Nobody subscribes: RabbitMQ drops what
reaches a topic without subscribers, after receiving and routing it.

``python benchmarks/stomp_bench.py [--quick]`` prints a table; ``run(quick)``
returns the figures as a dict for ``python -m benchmarks``.
"""

import argparse
import importlib.metadata
import json
import logging
import pathlib
import platform
import sys
import threading
import time
import uuid

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DESTINATION_TEMPLATE = "/topic/{topic}"


def _stomp_broker_module():
    # The broker finder lives with the tests; load it by path so that this
    # file also runs as a plain script.
    import importlib.util

    path = REPO_ROOT / "tests" / "stomp_broker.py"
    spec = importlib.util.spec_from_file_location("ffm_stomp_broker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus_messages():
    import fastfedmsg

    path = pathlib.Path(fastfedmsg.__file__).parent / "data" / "fedora-messages.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["msg"] for line in handle if line.strip()]


# -- the plain stomp.py loop -------------------------------------------------------

class _Receipts:
    """A stomp.py listener that lets one thread wait for each receipt."""

    def __init__(self):
        self.condition = threading.Condition()
        self.seen = set()

    def on_receipt(self, frame):
        with self.condition:
            self.seen.add(frame.headers.get("receipt-id"))
            self.condition.notify_all()

    def wait(self, receipt, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self.condition:
            while receipt not in self.seen:
                if not self.condition.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("no receipt %s within %.0f s" % (receipt, timeout))
            self.seen.discard(receipt)


def _stomp_py_run(broker, destination, bodies, confirmed):
    import stomp

    listener = _Receipts()
    connection = stomp.Connection11([(broker.host, broker.port)], vhost=broker.vhost,
                                    prefer_localhost=False, try_loopback_connect=False)
    connection.set_listener("receipts", listener)
    connection.connect(broker.user, broker.password, wait=True, with_connect_command=True)

    started = time.perf_counter()
    if confirmed:
        for index, body in enumerate(bodies):
            receipt = "r%d" % index
            connection.send(destination, body, content_type="application/json",
                            headers={"receipt": receipt})
            listener.wait(receipt)
    else:
        for body in bodies:
            connection.send(destination, body, content_type="application/json")
    handed = time.perf_counter() - started
    connection.send(destination, bodies[0], content_type="application/json",
                    headers={"receipt": "last"})
    listener.wait("last")
    processed = time.perf_counter() - started

    connection.disconnect()
    return handed, processed


# -- fastfedmsg ------------------------------------------------------------------------

def _fastfedmsg_run(broker, topic, messages, confirmed, many):
    from fastfedmsg.transports.stomp import StompPublisher

    publisher = StompPublisher({
        "topic_prefix": "org.fedoraproject", "environment": "dev", "stomp_uri": broker.uri,
        "stomp_user": broker.user, "stomp_pass": broker.password,
        "stomp_vhost": broker.vhost, "stomp_destination": DESTINATION_TEMPLATE,
        "stomp_confirm": confirmed, "stomp_queue_limit": len(messages) + 10})
    publisher.publish(topic, messages[0], "bench", None)  # learn the destination first

    started = time.perf_counter()
    if many:
        publisher.publish_many([(topic, msg) for msg in messages], "bench")
    else:
        publish = publisher.publish
        for msg in messages:
            publish(topic, msg, "bench", None)
    handed = time.perf_counter() - started
    publisher.close()  # DISCONNECT with a receipt: the broker has processed all
    return handed, time.perf_counter() - started


# -- the comparison ---------------------------------------------------------------------

def run(quick=True):
    """Measure every mode once; return the figures (messages a second, ratios)."""
    from fastfedmsg import _core

    logging.getLogger("stomp.py").setLevel(logging.ERROR)
    module = _stomp_broker_module()
    broker = module.shared_broker()
    try:
        corpus = _corpus_messages()
        fast_count = 5000 if quick else 50000
        confirmed_count = 500 if quick else 5000
        topic = "stompbench.%s" % uuid.uuid4().hex[:8]
        full_topic = "org.fedoraproject.dev.bench.%s" % topic
        destination = DESTINATION_TEMPLATE.format(topic=full_topic)
        builder = _core.Publisher(None, "org.fedoraproject", "dev", _core.username())

        def prepared(count):
            messages = [corpus[index % len(corpus)] for index in range(count)]
            bodies = [builder.build(topic, msg, "bench")[2] for msg in messages]
            return messages, bodies

        results = {}
        for mode, confirmed, count in (("fire_and_forget", False, fast_count),
                                       ("confirmed", True, confirmed_count)):
            messages, bodies = prepared(count)
            plain = _stomp_py_run(broker, destination, bodies, confirmed)
            single = _fastfedmsg_run(broker, topic, messages, confirmed, many=False)
            many_messages = messages if not confirmed else prepared(count * 10)[0]
            batched = _fastfedmsg_run(broker, topic, many_messages, confirmed, many=True)
            for stage, index in (("handed", 0), ("processed", 1)):
                plain_rate = count / plain[index]
                single_rate = count / single[index]
                many_rate = len(many_messages) / batched[index]
                results["%s/%s" % (mode, stage)] = {
                    "messages": count,
                    "stomp.py_msgs_per_s": round(plain_rate, 1),
                    "fastfedmsg_publish_msgs_per_s": round(single_rate, 1),
                    "fastfedmsg_publish_many_msgs_per_s": round(many_rate, 1),
                    "publish_ratio": round(single_rate / plain_rate, 2),
                    "publish_many_ratio": round(many_rate / plain_rate, 2),
                }
        server = _server_header(broker)
    finally:
        broker.stop()

    return {
        "benchmark": "STOMP publishing of Fedora corpus envelopes, fastfedmsg vs stomp.py",
        "broker": "%s at %s (%s)" % (broker.kind, broker.uri, server),
        "versions": {
            "python": platform.python_version(),
            "stomp.py": importlib.metadata.version("stomp.py"),
            "fastfedmsg": _version("fastfedmsg"),
        },
        "modes": results,
        "note": "ratios are fastfedmsg / stomp.py; the stomp.py loop sends pre-encoded "
                "bodies, fastfedmsg builds each envelope in the timed loop",
    }


def _server_header(broker):
    import stomp

    seen = {}

    class Listener(stomp.ConnectionListener):
        def on_connected(self, frame):
            seen["server"] = frame.headers.get("server", "unknown")

    connection = stomp.Connection11([(broker.host, broker.port)], vhost=broker.vhost,
                                    prefer_localhost=False, try_loopback_connect=False)
    connection.set_listener("server", Listener())
    try:
        connection.connect(broker.user, broker.password, wait=True,
                           with_connect_command=True)
        connection.disconnect()
    except Exception as exc:  # only a label for the report
        return "server unknown: %s" % exc
    return seen.get("server", "unknown")


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "source tree"


def _print(figures):
    print(figures["benchmark"])
    print("broker: %s" % figures["broker"])
    print("versions: %s" % ", ".join("%s %s" % item for item in figures["versions"].items()))
    print()
    print("%-26s %9s %14s %16s %18s %8s %8s" % (
        "mode", "messages", "stomp.py/s", "publish/s", "publish_many/s", "ratio", "many"))
    for mode, row in figures["modes"].items():
        print("%-26s %9d %14.0f %16.0f %18.0f %7.2fx %7.2fx" % (
            mode, row["messages"], row["stomp.py_msgs_per_s"],
            row["fastfedmsg_publish_msgs_per_s"], row["fastfedmsg_publish_many_msgs_per_s"],
            row["publish_ratio"], row["publish_many_ratio"]))
    print()
    print(figures["note"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(quick=args.quick)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        _print(figures)
    return 0


if __name__ == "__main__":
    try:
        import fastfedmsg  # noqa: F401  (installed, or built in place)
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())

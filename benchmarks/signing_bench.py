"""Signed publishing: fastfedmsg against fedmsg 1.1.7 on the Fedora corpus.

Both publish the corpus bodies with sign_messages=True (X.509, RSA 2048,
SHA-1) from a PUB socket on 127.0.0.1 to a SUB socket in this process, in the
same run, with certificates from a throwaway CA (tests/pki.py).  The rate is
publish calls per second; every delivered message of both is then checked
with real fedmsg's fedmsg.crypto.validate, so a fast but wrong signer cannot
win.  fedmsg re-reads and re-checks its private key for every message, which
is most of its cost; fastfedmsg reads it once per context.

Run: ``python benchmarks/signing_bench.py [--quick]``; or call
``run(quick=True)``, which returns a dict of the figures.
"""

import argparse
import json
import pathlib
import socket
import sys
import tempfile
import time

import zmq

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:  # for tests/pki.py, the throwaway CA
    sys.path.append(str(ROOT / "tests"))

import fastfedmsg  # noqa: E402
from fastfedmsg import crypto  # noqa: E402
from fastfedmsg.config import load_config  # noqa: E402
from fastfedmsg.context import Context  # noqa: E402
from pki import Pki  # noqa: E402

CORPUS = ROOT / "fastfedmsg" / "data" / "fedora-messages.jsonl"
NAME = "bench.%s" % crypto.short_hostname()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bodies():
    with open(CORPUS, encoding="utf-8") as handle:
        return [json.loads(line)["msg"] for line in handle if line.strip()]


def _config(pki, port):
    return dict(pki.config(), name=NAME, certnames={NAME: "bench"}, sign_messages=True,
                endpoints={NAME: ["tcp://127.0.0.1:%d" % port]}, post_init_sleep=0,
                zmq_linger=0, high_water_mark=0)


def _subscribe(port, publish_probe):
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect("tcp://127.0.0.1:%d" % port)
    deadline = time.monotonic() + 10
    while not sub.poll(20):
        if time.monotonic() > deadline:
            sub.close()
            raise RuntimeError("the benchmark's subscriber did not connect within 10 s")
        publish_probe()
    while sub.poll(100):
        sub.recv_multipart()
    return sub


def _collect(sub, expected, timeout=10.0):
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < expected and time.monotonic() < deadline:
        if sub.poll(100):
            frames.append(sub.recv_multipart())
    return frames


def _measure(publish, bodies, count):
    started = time.perf_counter()
    for index in range(count):
        publish("corpus", bodies[index % len(bodies)])
    return time.perf_counter() - started


def _fastfedmsg_run(pki, bodies, count):
    port = _free_port()
    context = Context(load_config(files=[], **_config(pki, port)))
    try:
        publisher = context.publisher
        sub = _subscribe(port, lambda: publisher.publish("probe", {}, "bench"))
        try:
            seconds = _measure(lambda topic, body: publisher.publish(topic, body, "bench"),
                               bodies, count)
            frames = _collect(sub, count)
        finally:
            sub.close()
    finally:
        context.destroy()
    return seconds, frames


def _fedmsg_run(pki, bodies, count):
    import fedmsg.config
    import fedmsg.core

    port = _free_port()
    config = dict(fedmsg.config.defaults)
    config.update(_config(pki, port))
    context = fedmsg.core.FedMsgContext(**config)
    try:
        sub = _subscribe(port, lambda: context.publish("probe", {}, "bench"))
        try:
            seconds = _measure(lambda topic, body: context.publish(topic, body, "bench"),
                               bodies, count)
            frames = _collect(sub, count)
        finally:
            sub.close()
    finally:
        context.publisher.setsockopt(zmq.LINGER, 0)
        context.destroy()
    return seconds, frames


def _all_valid(frames, config):
    import fedmsg.crypto

    return all(fedmsg.crypto.validate(json.loads(frame[1]), **config) for frame in frames)


def run(quick=True):
    """Publish signed corpus messages with both libraries; return the figures."""
    import logging

    import cryptography
    import fedmsg
    import zmq as pyzmq

    bodies = _bodies()
    fast_count = 300 if quick else 3000
    slow_count = 15 if quick else 150
    # fedmsg logs a warning per message checked without a routing policy.
    fedmsg_log = logging.getLogger("fedmsg.crypto")
    level = fedmsg_log.level
    fedmsg_log.setLevel(logging.ERROR)

    try:
        with tempfile.TemporaryDirectory(prefix="ffm-signing-bench-") as folder:
            pki = Pki(folder)
            pki.issue("bench", "bench.example.com")
            check = pki.config()

            fast_seconds, fast_frames = _fastfedmsg_run(pki, bodies, fast_count)
            slow_seconds, slow_frames = _fedmsg_run(pki, bodies, slow_count)
            fast_valid = _all_valid(fast_frames, check)
            slow_valid = _all_valid(slow_frames, check)
    finally:
        fedmsg_log.setLevel(level)

    fast_rate = fast_count / fast_seconds
    slow_rate = slow_count / slow_seconds
    return {
        "benchmark": "signed publishing (X.509, RSA 2048, SHA-1), Fedora corpus",
        "fastfedmsg_msgs_per_s": round(fast_rate, 1),
        "fedmsg_msgs_per_s": round(slow_rate, 1),
        "ratio": round(fast_rate / slow_rate, 1),
        "published": {"fastfedmsg": fast_count, "fedmsg": slow_count},
        "delivered": {"fastfedmsg": len(fast_frames), "fedmsg": len(slow_frames)},
        "all_delivered_validate_with_fedmsg": {"fastfedmsg": fast_valid, "fedmsg": slow_valid},
        "versions": {
            "fastfedmsg": fastfedmsg.__version__,
            "fedmsg": getattr(fedmsg, "__version__", "1.1.7"),
            "cryptography": cryptography.__version__,
            "pyzmq": pyzmq.__version__,
            "python": sys.version.split()[0],
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of ~15")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    for key, value in result["versions"].items():
        print("%-13s %s" % (key, value))
    print("fastfedmsg    %10.1f signed msg/s (%d published, %d delivered)" % (
        result["fastfedmsg_msgs_per_s"], result["published"]["fastfedmsg"],
        result["delivered"]["fastfedmsg"]))
    print("fedmsg        %10.1f signed msg/s (%d published, %d delivered)" % (
        result["fedmsg_msgs_per_s"], result["published"]["fedmsg"],
        result["delivered"]["fedmsg"]))
    print("ratio         %10.1fx" % result["ratio"])
    print("all delivered messages validate with fedmsg: %s"
          % result["all_delivered_validate_with_fedmsg"])
    return 0 if all(result["all_delivered_validate_with_fedmsg"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

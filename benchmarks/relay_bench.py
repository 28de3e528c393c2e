"""Relay forwarding: fastfedmsg-relay against a bare libzmq proxy.

Both relays run as subprocesses between the same kinds of sockets (a bound
SUB subscribed to everything, a bound PUB; no high-water mark) and forward
the same stream of Fedora corpus envelopes in the same run, in alternating
rounds.  The bare relay is ``zmq.proxy(SUB, PUB)`` and nothing else.

Nothing in Python touches a message while the clock runs:

* the producer queues the whole stream on an inproc socket before the clock
  starts, then a libzmq proxy pours it into an XPUB connected to the relay's
  inbound side, as fast as libzmq can send;
* the sink is a SUB on the relay's outbound side drained by another libzmq
  proxy (into a PUB nobody reads); its frame counter, read through
  proxy_steerable's STATISTICS command every few milliseconds, tells when the
  last message has arrived.

The rate is messages delivered to the sink per second, from the moment the
producer starts pouring to the moment the sink has them all.  The ratio
fastfedmsg-relay / bare proxy should be close to 1: fastfedmsg-relay is
libzmq's proxy plus a control socket.  On a shared machine single rounds
swing by tens of percent, so the headline ratio compares each relay's best
round (its least disturbed one); the ratio of medians and the ratio within
each pair of adjacent rounds are reported beside it.

``python benchmarks/relay_bench.py [--quick]`` prints the figures;
``run(quick)`` returns them as a dict for ``python -m benchmarks``.
"""

import argparse
import json
import pathlib
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import zmq

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: The bare relay: libzmq's proxy between the same sockets, nothing more.
BARE_PROXY = """
import sys, zmq
context = zmq.Context()
inbound = context.socket(zmq.SUB)
inbound.setsockopt(zmq.RCVHWM, 0)
inbound.setsockopt(zmq.SUBSCRIBE, b"")
inbound.bind(sys.argv[1])
outbound = context.socket(zmq.PUB)
outbound.setsockopt(zmq.SNDHWM, 0)
outbound.bind(sys.argv[2])
print("ready", flush=True)
zmq.proxy(inbound, outbound)
"""

READY_TIMEOUT_S = 20.0
DELIVERY_TIMEOUT_S = 120.0
FRAMES_PER_MESSAGE = 2


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _address(port):
    return "tcp://127.0.0.1:%d" % port


def corpus_stream(count):
    """``count`` (topic, body) frame pairs built from the shipped Fedora corpus."""
    from fastfedmsg import _core

    corpus_file = REPO_ROOT / "fastfedmsg" / "data" / "fedora-messages.jsonl"
    with open(corpus_file, encoding="utf-8") as handle:
        corpus = [json.loads(line) for line in handle if line.strip()]
    builder = _core.Publisher(None, "org.fedoraproject", "prod", _core.username())
    built = []
    for envelope in corpus:
        topic_frame, _, body_frame = builder.build("relaybench", envelope.get("msg", envelope),
                                                   "bench")
        built.append((topic_frame, body_frame))
    return [built[index % len(built)] for index in range(count)]


class SteeredProxy:
    """zmq.proxy_steerable in a thread, with STATISTICS and TERMINATE."""

    def __init__(self, context, frontend, backend):
        address = "inproc://relay-bench-control-%x" % id(self)
        self._proxy_side = context.socket(zmq.PAIR)
        self._proxy_side.bind(address)
        self.control = context.socket(zmq.PAIR)
        self.control.connect(address)
        self._thread = threading.Thread(
            target=zmq.proxy_steerable, args=(frontend, backend, None, self._proxy_side),
            daemon=True)

    def start(self):
        self._thread.start()

    def frames_in(self):
        self.control.send(b"STATISTICS")
        return int.from_bytes(self.control.recv_multipart()[0], sys.byteorder)

    def stop(self):
        self.control.send(b"TERMINATE")
        self._thread.join(10)
        self._proxy_side.close(linger=0)
        self.control.close(linger=0)


class Bench:
    """The producer and the sink, kept for every round; a relay per round."""

    def __init__(self, stream):
        self.stream = stream
        self.context = zmq.Context(2)

    def _start_relay(self, kind, inbound, outbound):
        if kind == "bare_proxy":
            argv = [sys.executable, "-c", BARE_PROXY, inbound, outbound]
            ready = "ready"
        else:
            argv = [sys.executable, "-m", "fastfedmsg.tools.relay", "--inbound", inbound,
                    "--outbound", outbound, "--high-water-mark", "0", "--linger", "0",
                    "--log-level", "WARNING"]
            ready = None
        process = subprocess.Popen(argv, cwd=str(REPO_ROOT), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        if ready is not None:
            line = process.stdout.readline()
            if line.strip() != ready:
                process.kill()
                raise RuntimeError("bare proxy did not start: %r %s"
                                   % (line, process.stderr.read()))
        return process

    def _stop_relay(self, process):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        process.stdout.close()
        process.stderr.close()

    def measure(self, kind):
        """One round through relay ``kind``; return delivered messages a second."""
        inbound, outbound = _address(_free_port()), _address(_free_port())
        relay = self._start_relay(kind, inbound, outbound)
        sockets = []

        def make(socket_type):
            sock = self.context.socket(socket_type)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            sockets.append(sock)
            return sock

        try:
            # The sink: outbound SUB -> a PUB nobody reads, counted in libzmq.
            sink_in = make(zmq.SUB)
            sink_in.setsockopt(zmq.SUBSCRIBE, b"")
            sink_in.connect(outbound)
            sink_out = make(zmq.PUB)
            sink_out.bind("inproc://relay-bench-sink-%x" % id(sink_out))
            sink = SteeredProxy(self.context, sink_in, sink_out)
            sink.start()

            # The producer: an XPUB, which sees the relay's subscription arrive.
            producer = make(zmq.XPUB)
            producer.connect(inbound)
            if not producer.poll(int(READY_TIMEOUT_S * 1000)):
                raise RuntimeError("%s never subscribed at %s" % (kind, inbound))
            producer.recv()

            # Probes until the sink sees one: the whole path is connected.
            deadline = time.monotonic() + READY_TIMEOUT_S
            while sink.frames_in() == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("nothing crossed %s within %.0f s"
                                       % (kind, READY_TIMEOUT_S))
                producer.send_multipart([b"probe", b"{}"])
                time.sleep(0.01)  # pacing between probes
            time.sleep(0.2)  # let in-flight probes land before the baseline count
            baseline = sink.frames_in()

            # Queue the stream on an inproc pipe before the clock starts.
            feed_out = make(zmq.PAIR)
            feed_in = make(zmq.PAIR)
            feed_address = "inproc://relay-bench-feed-%x" % id(feed_out)
            feed_in.bind(feed_address)
            feed_out.connect(feed_address)
            for topic_frame, body_frame in self.stream:
                feed_out.send(topic_frame, zmq.SNDMORE)
                feed_out.send(body_frame)
            pour = SteeredProxy(self.context, feed_in, producer)

            target = baseline + FRAMES_PER_MESSAGE * len(self.stream)
            started = time.perf_counter()
            pour.start()
            deadline = time.monotonic() + DELIVERY_TIMEOUT_S
            while True:
                received = sink.frames_in()
                if received >= target:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("%s delivered %d of %d messages within %.0f s" % (
                        kind, (received - baseline) // FRAMES_PER_MESSAGE,
                        len(self.stream), DELIVERY_TIMEOUT_S))
                time.sleep(0.002)  # sampling the counter, not waiting for a state
            elapsed = time.perf_counter() - started
            pour.stop()
            sink.stop()
            return len(self.stream) / elapsed
        finally:
            for sock in sockets:
                sock.close(linger=0)
            self._stop_relay(relay)

    def close(self):
        self.context.destroy(linger=0)


def run(quick=True):
    """Alternate rounds of both relays on one stream; return rates and ratios."""
    count = 50_000 if quick else 100_000
    rounds = 3 if quick else 7
    stream = corpus_stream(count)
    mean_body = statistics.mean(len(body) for _, body in stream)
    bench = Bench(stream)
    rates = {"bare_proxy": [], "fastfedmsg_relay": []}
    try:
        for index in range(rounds):
            order = ("bare_proxy", "fastfedmsg_relay")
            for kind in (order if index % 2 == 0 else order[::-1]):
                rates[kind].append(bench.measure(kind))
    finally:
        bench.close()

    best = {kind: max(values) for kind, values in rates.items()}
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    paired = [fast / plain for fast, plain in zip(rates["fastfedmsg_relay"],
                                                  rates["bare_proxy"])]
    return {
        "messages_per_round": count,
        "rounds": rounds,
        "mean_body_bytes": round(mean_body),
        "bare_proxy_msg_per_s": round(best["bare_proxy"]),
        "fastfedmsg_relay_msg_per_s": round(best["fastfedmsg_relay"]),
        "ratio": round(best["fastfedmsg_relay"] / best["bare_proxy"], 3),
        "ratio_of_medians": round(median["fastfedmsg_relay"] / median["bare_proxy"], 3),
        "median_paired_ratio": round(statistics.median(paired), 3),
        "paired_ratios": [round(ratio, 3) for ratio in paired],
        "rates": {kind: [round(rate) for rate in values] for kind, values in rates.items()},
        "target_ratio": 0.9,
        "versions": {"python": platform.python_version(), "pyzmq": zmq.__version__,
                     "libzmq": zmq.zmq_version()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Forwarding throughput of fastfedmsg-relay against a bare libzmq proxy.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter rounds (50k messages x 3 instead of 100k x 7)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    results = run(quick=args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("relay forwarding, %d messages a round (mean body %d bytes), %d rounds"
          % (results["messages_per_round"], results["mean_body_bytes"], results["rounds"]))
    print("versions: %s" % ", ".join("%s %s" % item for item in results["versions"].items()))
    print("%-18s %12s   %s" % ("relay", "best msg/s", "each round"))
    for kind, label in (("bare_proxy", "bare zmq.proxy"),
                        ("fastfedmsg_relay", "fastfedmsg-relay")):
        print("%-18s %12d   %s" % (label, results[kind + "_msg_per_s"],
                                    " ".join("%d" % rate for rate in results["rates"][kind])))
    print("ratio fastfedmsg-relay / bare proxy: %.3f best rounds (target >= %.1f), "
          "%.3f medians, %.3f median of pairs; per pair: %s"
          % (results["ratio"], results["target_ratio"], results["ratio_of_medians"],
             results["median_paired_ratio"],
             " ".join("%.3f" % ratio for ratio in results["paired_ratios"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

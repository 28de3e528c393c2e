"""Soak test: millions of real Fedora messages through fastfedmsg, every one counted.

``python benchmarks/soak.py [--count N]`` (default 10 million; ``--quick``
300,000) publishes the shipped corpus over and over with
``fastfedmsg.publish`` to a subscriber in another process, which drains the
socket in compiled code (fastfedmsg._loops.receive_loop) and counts every
message.  The publisher's resident set (psutil) is sampled about 200 times
along the way.

The publisher runs with a high-water mark and on_full='block' (both
settable), so memory stays bounded by the queues and a message is never
dropped: the run passes when the subscriber counted exactly what the
publisher's stats() say was sent, none was dropped, and the resident set
after warm-up grew by less than ``--max-growth-mb``.  With --on-full drop
the dropped messages are reported and the count must equal sent.

``run(quick=True) -> dict`` gives the same figures to other scripts
(benchmarks/harness.py collects such functions).
"""

import argparse
import json
import logging
import pathlib
import platform
import socket
import subprocess
import sys
import threading
import time

import psutil
import zmq

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: benchmarks/ is not a package root
    sys.path.insert(0, str(REPO_ROOT))

import fastfedmsg  # noqa: E402  (after the path fix above)
from benchmarks import workload  # noqa: E402

log = logging.getLogger("benchmarks.soak")

FULL_COUNT = 10_000_000
QUICK_COUNT = 300_000
END_MODNAME, END_TOPIC = "soak", "end"
END_MARKER = b".soak.end"
SAMPLES = 200
WARMUP_FRACTION = 0.05


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the subscriber process ------------------------------------------------------------

def subscribe(endpoint, hwm, timeout):
    """Receive until the end marker (or ``timeout`` s); print the counts as JSON."""
    from fastfedmsg import _loops

    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, hwm)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        result = _loops.receive_loop(sub, float(timeout), idle=30.0, end_marker=END_MARKER)
    finally:
        sub.close()
        context.term()
    result.pop("latencies_ns", None)
    print(json.dumps(result), flush=True)


def _start_subscriber(endpoint, hwm, timeout):
    return subprocess.Popen(
        [sys.executable, str(pathlib.Path(__file__).resolve()), "--subscribe", endpoint,
         "--hwm", str(hwm), "--timeout", str(timeout)],
        cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- the publisher -----------------------------------------------------------------------

def soak(count, hwm=10_000, on_full="block", send_timeout=60_000):
    """Publish ``count`` corpus messages to a draining subscriber process; return figures.

    The publishing runs in a thread of its own, so its fastfedmsg context never
    meets one the calling thread may have.
    """
    items = workload.load_corpus()
    port = _free_port()
    endpoint = "tcp://127.0.0.1:%d" % port
    receive_timeout = 120 + count / 20_000.0
    subscriber = _start_subscriber(endpoint, hwm, receive_timeout)
    process = psutil.Process()
    sample_every = max(count // SAMPLES, 1000)
    samples = []
    outcome = {}

    def publish_all():
        try:
            context = fastfedmsg.init(
                name="soak.host", endpoints={"soak.host": [endpoint]}, high_water_mark=hwm,
                on_full=on_full, send_timeout=send_timeout, zmq_linger=5000,
                wait_for_subscribers=(1, 60))
            publish = fastfedmsg.publish
            started = time.monotonic()
            samples.append((0, 0.0, process.memory_info().rss))
            sent_calls = 0
            while sent_calls < count:
                chunk_end = min(sent_calls + sample_every, count)
                for index in range(sent_calls, chunk_end):
                    modname, topic, msg = items[index % len(items)]
                    publish(topic=topic, msg=msg, modname=modname)
                sent_calls = chunk_end
                samples.append((sent_calls, time.monotonic() - started,
                                process.memory_info().rss))
                if len(samples) % (SAMPLES // 10) == 0:
                    log.info("%d of %d published, rss %.1f MB", sent_calls, count,
                             samples[-1][2] / 1e6)
            outcome["published_s"] = time.monotonic() - started
            outcome["stats"] = context.stats()
            publish(topic=END_TOPIC, msg={}, modname=END_MODNAME)
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc
        finally:
            fastfedmsg.destroy()  # flushes within the linger

    try:
        publisher = threading.Thread(target=publish_all, name="soak-publisher")
        publisher.start()
        publisher.join()
        if "error" in outcome:
            raise outcome["error"]
        output, errors = subscriber.communicate(timeout=receive_timeout + 30)
        if subscriber.returncode != 0:
            raise RuntimeError("the subscriber process failed: %s" % errors.strip())
        received = json.loads(output)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.communicate()

    published_s, stats = outcome["published_s"], outcome["stats"]
    warm = [rss for done, _s, rss in samples if done >= count * WARMUP_FRACTION]
    rss_after_warmup = warm[0] if warm else samples[-1][2]
    delivered_s = max(received["last_ns"] - received["first_ns"], 1) / 1e9
    return {
        "count": count,
        "high_water_mark": hwm,
        "on_full": on_full,
        "sent": stats["sent"],
        "dropped": stats["dropped"],
        "received": received["count"],
        "lost": stats["sent"] - received["count"],
        "end_seen": received["end_seen"],
        "publish_s": round(published_s, 2),
        "publish_msg_per_s": round(count / published_s),
        "delivered_msg_per_s": round(received["count"] / delivered_s),
        "rss_start_mb": round(samples[0][2] / 1e6, 1),
        "rss_after_warmup_mb": round(rss_after_warmup / 1e6, 1),
        "rss_end_mb": round(samples[-1][2] / 1e6, 1),
        "rss_peak_mb": round(max(rss for _d, _s, rss in samples) / 1e6, 1),
        "rss_growth_after_warmup_mb": round((samples[-1][2] - rss_after_warmup) / 1e6, 1),
        "rss_samples": [{"messages": done, "seconds": round(seconds, 3), "rss_bytes": rss}
                        for done, seconds, rss in samples],
        "versions": {"python": platform.python_version(), "pyzmq": zmq.__version__,
                     "libzmq": zmq.zmq_version(), "fastfedmsg": fastfedmsg.__version__},
    }


def passed(results, max_growth_mb=20.0):
    """(ok, reasons): every sent message arrived, and memory stayed flat."""
    reasons = []
    if results["lost"]:
        reasons.append("%d messages sent but not received" % results["lost"])
    if results["on_full"] != "drop" and results["dropped"]:
        reasons.append("%d messages dropped" % results["dropped"])
    if results["sent"] + results["dropped"] != results["count"]:
        reasons.append("sent + dropped = %d, published %d"
                       % (results["sent"] + results["dropped"], results["count"]))
    if not results["end_seen"]:
        reasons.append("the end marker never arrived")
    if results["rss_growth_after_warmup_mb"] > max_growth_mb:
        reasons.append("resident set grew %.1f MB after warm-up (limit %.1f MB)"
                       % (results["rss_growth_after_warmup_mb"], max_growth_mb))
    return not reasons, reasons


def run(quick=True):
    """The soak with 300,000 messages (quick) or 10 million; returns its figures."""
    results = soak(QUICK_COUNT if quick else FULL_COUNT)
    ok, reasons = passed(results)
    results["passed"] = ok
    results["problems"] = reasons
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None,
                        help="messages to publish (default %d)" % FULL_COUNT)
    parser.add_argument("--quick", action="store_true",
                        help="publish %d messages" % QUICK_COUNT)
    parser.add_argument("--hwm", type=int, default=10_000,
                        help="high-water mark of both ends, in messages (default 10000)")
    parser.add_argument("--on-full", choices=("block", "drop", "raise"), default="block",
                        help="what publish does at the high-water mark (default block)")
    parser.add_argument("--max-growth-mb", type=float, default=20.0,
                        help="fail when the resident set grows more after warm-up")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    parser.add_argument("--subscribe", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.subscribe:
        subscribe(args.subscribe, args.hwm, args.timeout)
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    count = args.count or (QUICK_COUNT if args.quick else FULL_COUNT)
    results = soak(count, hwm=args.hwm, on_full=args.on_full)
    ok, reasons = passed(results, args.max_growth_mb)
    results["passed"], results["problems"] = ok, reasons
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)

    print("soak: %d messages (high-water mark %d, on_full=%s); %s"
          % (count, results["high_water_mark"], results["on_full"],
             ", ".join("%s %s" % item for item in results["versions"].items())))
    print("sent %d, dropped %d, received %d, lost %d"
          % (results["sent"], results["dropped"], results["received"], results["lost"]))
    print("publish %.1f s (%d msg/s), delivered %d msg/s"
          % (results["publish_s"], results["publish_msg_per_s"],
             results["delivered_msg_per_s"]))
    print("rss MB: start %.1f, after warm-up %.1f, end %.1f, peak %.1f, growth after "
          "warm-up %.1f" % (results["rss_start_mb"], results["rss_after_warmup_mb"],
                            results["rss_end_mb"], results["rss_peak_mb"],
                            results["rss_growth_after_warmup_mb"]))
    print("PASSED" if ok else "FAILED: " + "; ".join(reasons))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

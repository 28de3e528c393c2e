"""The processes a benchmark runs: a publisher, a subscriber, an init timer.

``python -m benchmarks.workers publisher KEY --port P --config FILE``
``python -m benchmarks.workers subscriber --connect tcp://127.0.0.1:P``
``python -m benchmarks.workers init LIBRARY --port P --config FILE --repeats N``
``python -m benchmarks.workers instructions KEY --port P --config FILE --count N``

Each reads one JSON command a line on stdin and answers with JSON lines on
its original stdout (anything a library prints goes to stderr instead), so
the harness (benchmarks.harness) drives them in lock step:

* subscriber ``receive`` answers ``{"armed": true}`` at once, then the result
  of fastfedmsg._loops.receive_loop when the end marker arrived;
* publisher ``run`` sends COUNT messages, then the end marker, and answers
  how long the sends took; ``calibrate`` sends for about SECONDS;
* publisher ``probe`` answers at once and then sends a probe every 20 ms
  until the next command arrives; subscriber ``wait_probe`` answers when one
  arrived.  So nothing is timed before the subscription is in place.
"""

import argparse
import array
import gc
import json
import os
import resource
import select
import statistics
import sys
import time

import zmq

from benchmarks import workload
from benchmarks.competitors import COMPETITORS, PUBLISHER_NAME

PROBE_INTERVAL = 0.02
CALIBRATION_BATCH = 256


class Channel:
    """JSON lines in on fd 0, out on a private copy of fd 1."""

    def __init__(self):
        self.output = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.pending = b""

    def reply(self, **fields):
        self.output.write(json.dumps(fields) + "\n")
        self.output.flush()

    def waiting(self, timeout):
        """True when a command has arrived (within ``timeout`` seconds)."""
        if b"\n" in self.pending:
            return True
        readable, _, _ = select.select([0], [], [], timeout)
        return bool(readable)

    def command(self):
        while b"\n" not in self.pending:
            chunk = os.read(0, 65536)
            if not chunk:
                return {"cmd": "quit"}
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)


def resident_bytes():
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------
# The publisher.

class PublisherWorker:
    def __init__(self, competitor, channel):
        self.competitor = competitor
        self.channel = channel
        self.corpus = workload.load_corpus()
        self.prepared = {}

    def items(self, name):
        if name not in self.prepared:
            self.prepared[name] = self.competitor.prepare(workload.workload(name, self.corpus))
        return self.prepared[name]

    def serve(self):
        handlers = {
            "probe": self.probe, "run": self.run, "calibrate": self.calibrate,
            "latency": self.latency, "rss": self.rss, "rss_now": self.rss_now,
        }
        while True:
            command = self.channel.command()
            name = command.pop("cmd")
            if name == "quit":
                self.competitor.close()
                self.channel.reply(bye=True)
                return
            handlers[name](**command)

    def probe(self):
        self.channel.reply(probing=True)
        sent = 0
        while True:
            self.competitor.control(workload.PROBE_TOPIC)
            sent += 1
            if self.channel.waiting(PROBE_INTERVAL):
                break
        command = self.channel.command()
        if command.get("cmd") != "stop":
            raise RuntimeError("expected 'stop' after 'probe', found %r" % (command,))
        self.channel.reply(probes=sent)

    def run(self, work, count):
        items = self.items(work)
        gc.collect()
        started = time.perf_counter()
        self.competitor.send(items, count)
        seconds = time.perf_counter() - started
        self.competitor.control(workload.END_TOPIC)
        self.channel.reply(sent=count, seconds=seconds)

    def calibrate(self, work, seconds, max_count):
        items = self.items(work)
        sent = 0
        started = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds and sent < max_count:
            batch = min(CALIBRATION_BATCH, max_count - sent)
            self.competitor.send(items, batch)
            sent += batch
            elapsed = time.perf_counter() - started
        self.competitor.control(workload.END_TOPIC)
        self.channel.reply(sent=sent, seconds=elapsed)

    def latency(self, rate, seconds):
        # Paced sends: each message carries the wall-clock time taken just
        # before its publish call; the subscriber subtracts it from its own.
        corpus = [(modname, topic, dict(msg)) for modname, topic, msg in self.corpus
                  if isinstance(msg, dict)]
        total = int(rate * seconds)
        interval = 1.0 / rate
        publish = self.competitor.publish_one
        stamp_field = workload.STAMP_FIELD
        time_ns = time.time_ns
        clock = time.perf_counter
        behind = 0
        started = next_send = clock()
        for index in range(total):
            modname, topic, msg = corpus[index % len(corpus)]
            now = clock()
            if next_send > now:
                time.sleep(next_send - now)
            elif now - next_send > 0.001:
                behind += 1
            next_send += interval
            msg[stamp_field] = time_ns()
            publish(modname, topic, msg)
        seconds_taken = clock() - started
        self.competitor.control(workload.END_TOPIC)
        self.channel.reply(sent=total, seconds=seconds_taken, behind_1ms=behind)

    def rss(self, work, count, chunk, warmup):
        items = self.items(work)
        samples = []
        sent = 0
        warm_rss = None
        started = time.perf_counter()
        while sent < count:
            batch = min(chunk, count - sent)
            self.competitor.send(items, batch)
            sent += batch
            samples.append((sent, resident_bytes()))
            if warm_rss is None and sent >= warmup:
                warm_rss = samples[-1][1]
        seconds = time.perf_counter() - started
        self.competitor.control(workload.END_TOPIC)
        self.channel.reply(sent=sent, seconds=seconds, samples=samples,
                           warm_rss=warm_rss, end_rss=samples[-1][1],
                           peak_rss=peak_resident_bytes())

    def rss_now(self):
        gc.collect()
        self.channel.reply(rss=resident_bytes(), peak_rss=peak_resident_bytes())


# ---------------------------------------------------------------------------
# The subscriber.

class SubscriberWorker:
    def __init__(self, endpoint, channel):
        from fastfedmsg import _loops

        self.loops = _loops
        self.channel = channel
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)

    def serve(self):
        while True:
            command = self.channel.command()
            name = command.pop("cmd")
            if name == "quit":
                self.socket.close(linger=0)
                self.context.term()
                self.channel.reply(bye=True)
                return
            getattr(self, name)(**command)

    def wait_probe(self, timeout):
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.socket.poll(50):
                frames = self.socket.recv_multipart()
                if workload.PROBE_MARKER in frames[0]:
                    self.channel.reply(connected=True, seconds=time.monotonic() - started)
                    return
        self.channel.reply(connected=False, seconds=timeout)

    def receive(self, timeout, idle, latency=False):
        self.channel.reply(armed=True)
        result = self.loops.receive_loop(
            self.socket, timeout, idle, workload.PROBE_MARKER, workload.END_MARKER,
            workload.STAMP_KEY if latency else None)
        latencies = result.pop("latencies_ns")
        if latencies is not None:
            result["latency"] = summarize_latencies(array.array("q", latencies))
        self.channel.reply(**result)


def summarize_latencies(values):
    """Percentiles in microseconds of latencies given in nanoseconds."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def percentile(fraction):
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000.0

    return {
        "count": len(ordered),
        "p50_us": percentile(0.50),
        "p90_us": percentile(0.90),
        "p99_us": percentile(0.99),
        "p999_us": percentile(0.999),
        "max_us": ordered[-1] / 1000.0,
        "mean_us": statistics.fmean(ordered) / 1000.0,
    }


# ---------------------------------------------------------------------------
# init() timing.

def time_init(library, repeats, channel):
    """Time ``init(post_init_sleep=0)`` then ``destroy()``, ``repeats`` times."""
    if library == "fastfedmsg":
        import fastfedmsg as module
    else:
        import warnings

        warnings.simplefilter("ignore")
        import fedmsg as module
        import fedmsg.config

        fedmsg.config.load_config(filenames=[os.environ["FEDMSG_CONFIG"]],
                                  invalidate_cache=True)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        module.init(name=PUBLISHER_NAME, post_init_sleep=0)
        timings.append(time.perf_counter() - started)
        module.destroy()
    channel.reply(seconds=timings)


# ---------------------------------------------------------------------------
# Instruction counts (run under callgrind by the harness).

def send_for_counting(competitor, port, count, warmup):
    """Send ``warmup`` then ``count`` corpus messages to a SUB socket in this
    process.  The harness runs this under callgrind twice (with ``count`` 0
    and N) and divides the difference of the publishing thread's
    instructions by N."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect("tcp://127.0.0.1:%d" % port)
    deadline = time.monotonic() + 120
    while True:
        competitor.control(workload.PROBE_TOPIC)
        if sub.poll(50):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the in-process subscriber received no probe within 120 s")

    items = competitor.prepare(workload.load_corpus())
    competitor.send(items, warmup)
    competitor.send(items, count)
    sub.close(linger=0)
    context.term()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["publisher", "subscriber", "init", "instructions"])
    parser.add_argument("name", nargs="?", help="competitor key or library")
    parser.add_argument("--port", type=int)
    parser.add_argument("--config")
    parser.add_argument("--connect")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)

    if args.role == "instructions":
        competitor = COMPETITORS[args.name]()
        competitor.open(args.port, args.config)
        send_for_counting(competitor, args.port, args.count, args.warmup)
        competitor.close()
        return 0

    channel = Channel()
    if args.role == "publisher":
        competitor = COMPETITORS[args.name]()
        competitor.open(args.port, args.config)
        worker = PublisherWorker(competitor, channel)
        channel.reply(ready=True, pid=os.getpid())
        worker.serve()
    elif args.role == "subscriber":
        worker = SubscriberWorker(args.connect, channel)
        channel.reply(ready=True, pid=os.getpid())
        worker.serve()
    else:
        os.environ["FEDMSG_CONFIG"] = args.config
        channel.reply(ready=True, pid=os.getpid())
        time_init(args.name, args.repeats, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())

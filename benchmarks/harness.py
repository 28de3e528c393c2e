"""``python -m benchmarks``: every publisher side by side, in one run.

What is measured
----------------
* Throughput: each competitor (benchmarks.competitors) publishes the shipped
  corpus of real Fedora messages in its own process, to a subscriber in
  another process whose receive loop is compiled (fastfedmsg._loops).  The
  figure is messages delivered a second, timed by the subscriber from the
  first message to the last, checked against the count sent (a round that
  lost messages says so).  High-water mark 0 on both ends; the publisher
  sends probes until the subscriber has one, so nothing is timed before the
  subscription is in place.  A short calibration sizes each round to about
  the same duration for every competitor; the table shows the median of the
  rounds and each figure as a ratio to fedmsg and to the floor.  The floor
  sends envelopes that fastfedmsg built beforehand, from a C loop, making
  each frame the way fastfedmsg's publisher does (the topic frame sent in
  place, the envelope copied into a reused block: fastfedmsg/_frames.pxi), so
  the gap to it is what building envelopes costs; a second floor row makes
  its frames with zmq_msg_init_size, as zmq_send does.
* Body sizes (``--plot`` or ``--sweep``): the same, with bodies of 100 B to
  64 KiB built from the corpus.
* Latency: fastfedmsg and fedmsg publish at a steady 10,000 messages a
  second; each body carries the wall-clock time taken before its publish
  call and the subscriber (same machine, same clock) keeps the difference.
* Memory: fastfedmsg publishes 5 million messages (200k with ``--quick``) to
  a draining subscriber; the publisher's resident set is sampled after
  warm-up, at the end of sending, after the subscriber drained, and at peak.
* init(): time of ``init(post_init_sleep=0)``, median of many, fastfedmsg
  and fedmsg.

The targets of issue 5 are printed next to the figures as met or not met;
they never fail the run.  The exit status is 1 only when a measurement could
not be made (a worker crashed or timed out).  Other helpers' benchmarks
(benchmarks.relay_bench, stomp_bench, signing_bench) run afterwards when
present, through their ``run(quick=...)``.
"""

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pathlib
import platform
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

from benchmarks import report, workload
from benchmarks.competitors import BASELINE, COMPETITORS, FLOOR, LATENCY_COMPETITORS, write_config

log = logging.getLogger(__name__)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

EXTRA_BENCHMARKS = ("relay_bench", "stomp_bench", "signing_bench", "soak")


class Plan:
    """How long and how often to measure, for the full run or --quick."""

    def __init__(self, quick):
        self.quick = quick
        # Even the quick run takes five rounds of a second: shorter rounds on
        # these shared machines swung the ratios by a factor of two.
        self.rounds = 5
        self.round_seconds = 1.0 if quick else 1.5
        self.calibration_seconds = 0.15 if quick else 0.4
        self.sweep_rounds = 1 if quick else 3
        self.sweep_round_seconds = 0.3 if quick else 1.0
        self.min_count = 500
        self.max_count = 3_000_000
        # A PUB socket with no high-water mark queues what the subscriber has
        # not taken yet: cap the bytes of a round to bound that queue.
        self.max_round_bytes = (256 if quick else 512) * 1024 * 1024
        self.latency_rate = 10_000
        self.latency_seconds = 2.0 if quick else 4.0
        self.latency_repeats = 3
        self.rss_count = 200_000 if quick else 5_000_000
        self.rss_chunk = 20_000 if quick else 100_000
        self.rss_warmup = 100_000 if quick else 1_000_000
        self.init_repeats = 50 if quick else 200
        self.instruction_messages = 2000 if quick else 5000


# ---------------------------------------------------------------------------
# Worker processes.

class WorkerError(RuntimeError):
    pass


class Worker:
    """A benchmarks.workers process driven by JSON lines, with timeouts."""

    def __init__(self, label, args, scratch):
        self.label = label
        self.stderr_path = os.path.join(scratch, "%s-%d.stderr" % (
            label.replace(" ", "_").replace("/", "_"), time.monotonic_ns()))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("FEDMSG_CONFIG", None)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.workers"] + [str(a) for a in args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                cwd=str(REPO_ROOT), env=env)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.pending = b""

    def send(self, command):
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise WorkerError("%s exited before it took %r%s"
                              % (self.label, command, self.stderr_tail())) from exc

    def reply(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError("%s gave no answer within %.0f s%s"
                                  % (self.label, timeout, self.stderr_tail()))
            if self.selector.select(left):
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    raise WorkerError("%s exited (status %s)%s" % (
                        self.label, self.process.wait(5), self.stderr_tail()))
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def request(self, command, timeout=30.0):
        """Send ``command`` (a dict with "cmd") and return the first answer."""
        self.send(command)
        return self.reply(timeout)

    def stderr_tail(self, lines=15):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
                tail = handle.read().splitlines()[-lines:]
        except OSError:
            return ""
        return ("; its stderr ends with:\n    " + "\n    ".join(tail)) if tail else ""

    def close(self):
        if self.process.poll() is None:
            try:
                self.request({"cmd": "quit"}, timeout=10)
                self.process.wait(10)
            except (WorkerError, subprocess.TimeoutExpired, OSError, ValueError):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.selector.close()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Session:
    """One competitor's publisher process and its subscriber process, connected."""

    def __init__(self, key, scratch, **config_extra):
        self.key = key
        port = free_port()
        config = write_config(os.path.join(scratch, "%s-%d.py" % (key, port)), port,
                              **config_extra)
        self.publisher = Worker("publisher %s" % key,
                                ["publisher", key, "--port", port, "--config", config], scratch)
        self.subscriber = Worker("subscriber for %s" % key,
                                 ["subscriber", "--connect", "tcp://127.0.0.1:%d" % port], scratch)

    def __enter__(self):
        try:
            self.publisher.reply(timeout=60)
            self.subscriber.reply(timeout=60)
            self.publisher.request({"cmd": "probe"})
            connected = self.subscriber.request({"cmd": "wait_probe", "timeout": 20}, timeout=30)
            self.publisher.request({"cmd": "stop"})
            if not connected["connected"]:
                raise WorkerError("the subscriber for %s received no probe within 20 s"
                                  % self.key)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.publisher.close()
        self.subscriber.close()

    def round(self, command, expected_seconds, latency=False):
        """Arm the subscriber, run ``command`` on the publisher, return both answers."""
        timeout = 60 + 20 * expected_seconds
        self.subscriber.request({"cmd": "receive", "timeout": timeout, "idle": 10.0,
                                 "latency": latency})
        sent = self.publisher.request(command, timeout=timeout)
        received = self.subscriber.reply(timeout=timeout)
        return sent, received


def round_figures(sent, received):
    """The figures of one round: delivered rate, losses, publisher-side rate."""
    count = received["count"]
    span = (received["last_ns"] - received["first_ns"]) / 1e9
    delivered = (count - 1) / span if count > 1 and span > 0 else None
    return {
        "sent": sent["sent"],
        "received": count,
        "lost": sent["sent"] - count,
        "end_seen": received["end_seen"],
        "delivered_per_s": delivered,
        "publisher_per_s": sent["sent"] / sent["seconds"] if sent["seconds"] > 0 else None,
        "seconds": span,
        "bytes": received["bytes"],
    }


def envelope_estimate(work):
    """Bytes of one message of a workload, for the per-round byte cap."""
    if work == "corpus":
        return 700
    return int(work) + 200


def measure_throughput(keys, works, plan, scratch, attempt):
    """Every competitor on every workload: a calibration each, then rounds
    taken in turn (round 1 of each competitor, then round 2...).

    All the sessions stay open for the whole phase, idle ones blocked on a
    read, so that the rounds of different competitors are close in time and
    a change in the machine's load falls on all of them alike.  A competitor
    whose process fails is dropped; the others go on.  Returns
    ``{work: {key: summary}}``.
    """
    sessions = {}
    results = {work: {} for work in works}
    try:
        for key in keys:
            log.info("starting %s", COMPETITORS[key].label)
            session = attempt("start of %s" % key, lambda: Session(key, scratch).__enter__())
            if session is not None:
                sessions[key] = session

        for work in works:
            sweep = work != "corpus"
            rounds = plan.sweep_rounds if sweep else plan.rounds
            seconds = plan.sweep_round_seconds if sweep else plan.round_seconds
            max_count = max(plan.min_count, min(
                plan.max_count, plan.max_round_bytes // envelope_estimate(work)))
            log.info("throughput, %s: %d rounds of ~%.1f s", "corpus" if not sweep else
                     "%s-byte bodies" % work, rounds, seconds)

            plans = {}
            for key, session in list(sessions.items()):
                sizing = attempt("calibration of %s on %s" % (key, work),
                                 lambda: calibrate(session, work, plan, seconds, max_count))
                if sizing is None:
                    sessions.pop(key).close()
                else:
                    plans[key] = sizing

            figures = {key: [] for key in plans}
            for index in range(rounds):
                for key, (count, rate) in plans.items():
                    if key not in sessions:
                        continue
                    answer = attempt("round %d of %s on %s" % (index + 1, key, work),
                                     lambda: sessions[key].round(
                                         {"cmd": "run", "work": work, "count": count},
                                         count / rate))
                    if answer is None:
                        sessions.pop(key).close()
                        continue
                    figures[key].append(round_figures(*answer))
                    log.info("  %-40s %-6s round %d/%d: %s delivered/s, %s sent, %s lost",
                             COMPETITORS[key].label, work, index + 1, rounds,
                             report.rate_text(figures[key][-1]["delivered_per_s"]),
                             figures[key][-1]["sent"], figures[key][-1]["lost"])
            for key, rounds_done in figures.items():
                if rounds_done:
                    results[work][key] = summarize_rounds(rounds_done)
    finally:
        for session in sessions.values():
            session.close()
    return results


def calibrate(session, work, plan, seconds, max_count):
    """Send for a moment; return (messages per round, the publisher's rate)."""
    sent, _received = session.round(
        {"cmd": "calibrate", "work": work, "seconds": plan.calibration_seconds,
         "max_count": max_count}, plan.calibration_seconds + 5)
    rate = sent["sent"] / max(sent["seconds"], 1e-6)
    return int(min(max(rate * seconds, plan.min_count), max_count)), rate


def summarize_rounds(figures):
    rates = [f["delivered_per_s"] for f in figures if f["delivered_per_s"]]
    publisher_rates = [f["publisher_per_s"] for f in figures if f["publisher_per_s"]]
    return {
        "median_per_s": statistics.median(rates) if rates else None,
        "min_per_s": min(rates) if rates else None,
        "max_per_s": max(rates) if rates else None,
        "publisher_median_per_s": statistics.median(publisher_rates) if publisher_rates else None,
        "lost": sum(f["lost"] for f in figures),
        "sent": sum(f["sent"] for f in figures),
        "rounds": figures,
    }


def measure_latency(key, plan, scratch):
    with Session(key, scratch) as session:
        # Warm-up: fill caches, connect everything, at full speed.
        session.round({"cmd": "calibrate", "work": "corpus", "seconds": 0.2,
                       "max_count": 20_000}, 1)
        sent, received = session.round(
            {"cmd": "latency", "rate": plan.latency_rate, "seconds": plan.latency_seconds},
            plan.latency_seconds, latency=True)
    result = dict(received.get("latency") or {"count": 0})
    result.update(sent=sent["sent"], received=received["count"],
                  lost=sent["sent"] - received["count"],
                  achieved_per_s=sent["sent"] / sent["seconds"],
                  behind_schedule_1ms=sent["behind_1ms"],
                  stamps_missing=received["stamps_missing"])
    return result


def combine_latency(repeats):
    """The median over repeats of each percentile; the repeats themselves kept."""
    combined = {"repeats": repeats}
    for name in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"):
        values = [r[name] for r in repeats if r.get(name) is not None]
        combined[name] = statistics.median(values) if values else None
    for name in ("sent", "received", "lost", "behind_schedule_1ms", "stamps_missing"):
        combined[name] = sum(r[name] for r in repeats)
    combined["achieved_per_s"] = statistics.median(r["achieved_per_s"] for r in repeats)
    return combined


#: The memory run bounds the publisher's queue, so that RSS shows what the
#: publisher itself keeps, not how far libzmq's queue ran ahead of the
#: subscriber (memory glibc then keeps after the queue drains).
MEMORY_RUN_CONFIG = {"high_water_mark": 1000, "on_full": "block", "send_timeout": 60000}


def measure_memory(key, plan, scratch):
    with Session(key, scratch, **MEMORY_RUN_CONFIG) as session:
        expected = plan.rss_count / 200_000.0
        sent, received = session.round(
            {"cmd": "rss", "work": "corpus", "count": plan.rss_count, "chunk": plan.rss_chunk,
             "warmup": plan.rss_warmup}, expected)
        drained = session.publisher.request({"cmd": "rss_now"})
    return {
        "messages": sent["sent"],
        "received": received["count"],
        "lost": sent["sent"] - received["count"],
        "warmup_messages": plan.rss_warmup,
        "warm_rss": sent["warm_rss"],
        "end_rss": sent["end_rss"],
        "drained_rss": drained["rss"],
        "peak_rss": drained["peak_rss"],
        "growth_after_warmup": sent["end_rss"] - sent["warm_rss"],
        "growth_after_drain": drained["rss"] - sent["warm_rss"],
        "publisher_per_s": sent["sent"] / sent["seconds"],
        "samples": sent["samples"],
    }


def measure_init(library, plan, scratch):
    port = free_port()
    config = write_config(os.path.join(scratch, "init-%s-%d.py" % (library, port)), port)
    worker = Worker("init %s" % library, ["init", library, "--port", port, "--config", config,
                                         "--repeats", plan.init_repeats], scratch)
    try:
        worker.reply(timeout=60)
        timings = worker.reply(timeout=120)["seconds"]
    finally:
        worker.close()
    ordered = sorted(timings)
    return {
        "repeats": len(timings),
        "median_ms": statistics.median(timings) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        "min_ms": ordered[0] * 1000,
        "first_ms": timings[0] * 1000,
    }


def measure_instructions(keys, plan, scratch):
    """Instructions per message in each competitor's publishing thread (callgrind).

    Independent of the machine's load, unlike every other figure here: each
    competitor runs under ``valgrind --tool=callgrind`` twice, sending 0 and
    then N corpus messages after the same warm-up, and the difference of the
    main thread's instruction counts is divided by N.  The kernel's work and
    ZeroMQ's I/O thread are not in the figure.
    """
    if shutil.which("valgrind") is None:
        raise WorkerError("--instructions needs valgrind on the PATH; install it (apt-get "
                          "install valgrind) or leave --instructions out")
    results = {}
    for key in keys:
        count = plan.instruction_messages // (20 if key == "fedmsg_guessed" else 1)
        totals = []
        for messages in (0, count):
            port = free_port()
            config = write_config(os.path.join(scratch, "cg-%s-%d.py" % (key, port)), port)
            prefix = os.path.join(scratch, "cg-%s-%d" % (key, messages))
            command = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                       "--callgrind-out-file=%s.%%p" % prefix, sys.executable, "-m",
                       "benchmarks.workers", "instructions", key, "--port", str(port),
                       "--config", config, "--count", str(messages)]
            env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
            env.pop("FEDMSG_CONFIG", None)
            log.info("  callgrind: %s, %d messages", COMPETITORS[key].label, messages)
            done = subprocess.run(command, cwd=str(REPO_ROOT), env=env, timeout=1800,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode != 0:
                raise WorkerError("callgrind run of %s failed (status %d): %s" % (
                    key, done.returncode, done.stderr.decode(errors="replace")[-2000:]))
            totals.append(_main_thread_instructions(prefix))
        results[key] = {"messages": count,
                        "instructions_per_message": (totals[1] - totals[0]) / count}
    return results


def _main_thread_instructions(prefix):
    # With --separate-threads, thread 1 (the main thread) is written to PREFIX.PID-01.
    folder, stem = os.path.split(prefix)
    for name in os.listdir(folder):
        if name.startswith(stem + ".") and name.endswith("-01"):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("summary:") or line.startswith("totals:"):
                        return int(line.split()[1])
    raise WorkerError("no callgrind output for the main thread under %s" % prefix)


# ---------------------------------------------------------------------------
# Versions and the other helpers' benchmarks.

def versions():
    import orjson
    import zmq

    import fastfedmsg

    found = {
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "orjson": orjson.__version__,
        "fastfedmsg": fastfedmsg.__version__,
    }
    for name, distribution in (("Cython", "Cython"), ("fedmsg", "fedmsg")):
        try:
            found[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine():
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }


def run_extra(name, quick):
    """Run benchmarks.NAME.run(quick=...) if the module exists; None if it does not."""
    module_name = "benchmarks." + name
    if importlib.util.find_spec(module_name) is None:
        log.info("  %s is not present; skipped", module_name)
        return None
    module = importlib.import_module(module_name)
    return module.run(quick=quick)


# ---------------------------------------------------------------------------
# The command.

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure fastfedmsg against fedmsg 1.1.7, plain pyzmq + orjson and a "
                    "C floor, on the shipped corpus of real Fedora messages.")
    parser.add_argument("--quick", action="store_true",
                        help="short rounds and fewer messages (CI: a few minutes)")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw delivered rate against body size (implies --sweep)")
    parser.add_argument("--sweep", action="store_true",
                        help="also measure bodies of 100 B to 64 KiB")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per message under callgrind (needs "
                             "valgrind; a few minutes; unaffected by the machine's load)")
    parser.add_argument("--only", metavar="KEY", action="append", choices=sorted(COMPETITORS),
                        help="measure only these competitors (repeatable): %s"
                             % ", ".join(COMPETITORS))
    parser.add_argument("--skip", action="append", default=[],
                        choices=["throughput", "latency", "memory", "init", "extra"],
                        help="leave out a part of the run (repeatable)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    plan = Plan(args.quick)
    sweep = bool(args.plot or args.sweep)
    works = ["corpus"] + ([str(size) for size in workload.SWEEP_SIZES] if sweep else [])
    keys = args.only or list(COMPETITORS)
    started = time.monotonic()

    results = {
        "mode": "quick" if args.quick else "full",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": machine(),
        "workload": {"corpus_messages": len(workload.load_corpus()),
                     "sweep_sizes": list(workload.SWEEP_SIZES) if sweep else []},
        "plan": {k: v for k, v in vars(plan).items()},
        "throughput": {}, "sweep": {}, "instructions": {}, "latency": {}, "memory": None,
        "init": {},
        "extra": {}, "errors": [],
    }

    def attempt(what, action):
        try:
            return action()
        except Exception as exc:  # a failed part is reported; the rest still runs
            log.error("%s failed: %s", what, exc)
            results["errors"].append({"what": what, "error": str(exc),
                                      "traceback": traceback.format_exc()})
            return None

    scratch = tempfile.mkdtemp(prefix="fastfedmsg-bench-")
    try:
        if "throughput" not in args.skip:
            measured = measure_throughput(keys, works, plan, scratch, attempt)
            results["throughput"] = measured.pop("corpus")
            for work, by_key in measured.items():
                for key, figure in by_key.items():
                    results["sweep"].setdefault(key, {})[work] = figure

        if args.instructions:
            log.info("instructions per message (callgrind)")
            measured = attempt("instruction counts",
                               lambda: measure_instructions(keys, plan, scratch))
            if measured:
                results["instructions"] = measured

        if "latency" not in args.skip:
            # Alternate the competitors, so that a noisy moment on the
            # machine does not fall on one of them only.
            repeats = {key: [] for key in LATENCY_COMPETITORS}
            for repeat in range(plan.latency_repeats):
                for key in LATENCY_COMPETITORS:
                    log.info("latency at %d msg/s (%d/%d): %s", plan.latency_rate, repeat + 1,
                             plan.latency_repeats, COMPETITORS[key].label)
                    measured = attempt("latency of %s" % key,
                                       lambda: measure_latency(key, plan, scratch))
                    if measured:
                        repeats[key].append(measured)
            for key, measured in repeats.items():
                if measured:
                    results["latency"][key] = combine_latency(measured)

        if "memory" not in args.skip:
            log.info("memory: %d messages from %s", plan.rss_count,
                     COMPETITORS["fastfedmsg"].label)
            results["memory"] = attempt("memory of fastfedmsg",
                                        lambda: measure_memory("fastfedmsg", plan, scratch))

        if "init" not in args.skip:
            for library in ("fastfedmsg", "fedmsg"):
                log.info("init(post_init_sleep=0): %s", library)
                measured = attempt("init of %s" % library,
                                   lambda: measure_init(library, plan, scratch))
                if measured:
                    results["init"][library] = measured

        if "extra" not in args.skip:
            for name in EXTRA_BENCHMARKS:
                log.info("other benchmark: benchmarks.%s", name)
                measured = attempt("benchmarks.%s" % name, lambda: run_extra(name, args.quick))
                if measured is not None:
                    results["extra"][name] = measured
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    results["seconds"] = time.monotonic() - started
    report.add_ratios(results, BASELINE, FLOOR)
    results["targets"] = report.evaluate_targets(results)
    print(report.render(results))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=str)
            handle.write("\n")
        log.info("wrote %s", args.json)
    if args.plot:
        if results["sweep"]:
            report.plot(results, args.plot)
            log.info("wrote %s", args.plot)
        else:
            log.error("nothing to plot: no body-size figures were measured")
            results["errors"].append({"what": "plot", "error": "no body-size figures"})
    return 1 if results["errors"] else 0

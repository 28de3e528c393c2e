"""The harness's output: ratios, the issue's targets, the text table, the plot.

Everything here reads the results dict that benchmarks.harness builds (the
same dict ``--json`` writes), so a saved JSON file can be rendered again.
"""

import statistics

from benchmarks.competitors import COMPETITORS

MB = 1000 * 1000

#: The targets of issue 5: (name, where the figure is, how it is compared).
TARGETS = (
    ("publish, modname given >= 0.8 x floor", ("throughput", "fastfedmsg", "ratio_floor"), 0.8),
    ("publish, modname given >= 15 x fedmsg", ("throughput", "fastfedmsg", "ratio_fedmsg"), 15.0),
    ("publish, modname guessed >= 0.7 x floor",
     ("throughput", "fastfedmsg_guessed", "ratio_floor"), 0.7),
    ("publish_many >= 0.9 x floor", ("throughput", "fastfedmsg_many", "ratio_floor"), 0.9),
)


def rate_text(value):
    return "-" if value is None else "{:,.0f}".format(value)


def ratio_text(value):
    if value is None:
        return "-"
    return "%.2f" % value if value < 10 else "%.1f" % value


def bytes_text(value):
    if value is None:
        return "-"
    return "%+.1f MB" % (value / MB) if value < 0 else "%.1f MB" % (value / MB)


def add_ratios(results, baseline, floor):
    """Add ratio_fedmsg and ratio_floor to every throughput and sweep figure.

    Rounds of different competitors are taken in turn, so round k of one is
    paired with round k of the reference: the ratio is the median of the
    paired ratios, which a change in the machine's load affects least.
    """

    def ratio(figure, reference):
        if not figure or not reference:
            return None
        pairs = [ours["delivered_per_s"] / theirs["delivered_per_s"]
                 for ours, theirs in zip(figure.get("rounds", ()), reference.get("rounds", ()))
                 if ours["delivered_per_s"] and theirs["delivered_per_s"]]
        if pairs:
            return statistics.median(pairs)
        if figure.get("median_per_s") is None or not reference.get("median_per_s"):
            return None
        return figure["median_per_s"] / reference["median_per_s"]

    table = results["throughput"]
    for figure in table.values():
        figure["ratio_fedmsg"] = ratio(figure, table.get(baseline))
        figure["ratio_floor"] = ratio(figure, table.get(floor))
    for key, sizes in results["sweep"].items():
        for size, figure in sizes.items():
            figure["ratio_fedmsg"] = ratio(figure, results["sweep"].get(baseline, {}).get(size))
            figure["ratio_floor"] = ratio(figure, results["sweep"].get(floor, {}).get(size))


def _dig(results, path):
    value = results
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def evaluate_targets(results):
    """Each target with its measured value and met (True, False, or None: not measured)."""
    targets = []
    for name, path, limit in TARGETS:
        value = _dig(results, path)
        targets.append({"target": name, "value": value,
                        "text": ratio_text(value) + " x" if value is not None else "-",
                        "met": None if value is None else value >= limit})

    ours = _dig(results, ("latency", "fastfedmsg", "p99_us"))
    theirs = _dig(results, ("latency", "fedmsg", "p99_us"))
    both = ours is not None and theirs is not None
    targets.append({
        "target": "p99 latency at 10k msg/s below fedmsg's",
        "value": ours,
        "text": ("%.0f us vs %.0f us" % (ours, theirs)) if both else "-",
        "met": (ours < theirs) if both else None})

    memory = results.get("memory") or {}
    growth = memory.get("growth_after_drain")
    count = memory.get("messages")
    targets.append({
        "target": "RSS growth after warm-up < 10 MB (%s messages)"
                  % ("{:,}".format(count) if count else "?"),
        "value": growth,
        "text": bytes_text(growth),
        "met": None if growth is None else growth < 10 * MB})

    init_ms = _dig(results, ("init", "fastfedmsg", "median_ms"))
    targets.append({
        "target": "init() with post_init_sleep=0 < 5 ms",
        "value": init_ms,
        "text": "-" if init_ms is None else "%.2f ms" % init_ms,
        "met": None if init_ms is None else init_ms < 5.0})
    return targets


def _table(header, rows):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = []
    for row in [header] + rows:
        cells = []
        for i, cell in enumerate(row):
            cells.append(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _label(key):
    return COMPETITORS[key].label if key in COMPETITORS else key


def render(results):
    """The whole report as text."""
    lines = []
    machine = results["machine"]
    lines.append("fastfedmsg benchmarks: %s run, %s, %s CPUs, load %s; took %.0f s" % (
        results["mode"], results["started"], machine["cpus"],
        " ".join("%.2f" % x for x in machine["load_average"]), results.get("seconds", 0)))
    lines.append("versions: " + ", ".join(
        "%s %s" % item for item in results["versions"].items()))
    plan = results["plan"]

    if results["throughput"]:
        lines.append("")
        lines.append(
            "Throughput: the %d real Fedora messages of the corpus, cycled; messages delivered "
            "a second to a C subscriber in another process (first to last message), median "
            "of %d rounds of ~%.1f s; high-water mark 0" % (
                results["workload"]["corpus_messages"], plan["rounds"], plan["round_seconds"]))
        rows = []
        for key, figure in results["throughput"].items():
            lost = figure["lost"]
            rows.append([
                _label(key), rate_text(figure["median_per_s"]),
                "%s-%s" % (rate_text(figure["min_per_s"]), rate_text(figure["max_per_s"])),
                ratio_text(figure.get("ratio_fedmsg")), ratio_text(figure.get("ratio_floor")),
                rate_text(figure["publisher_median_per_s"]),
                "{:,}".format(figure["sent"]),
                "0" if lost == 0 else "LOST %s" % "{:,}".format(lost)])
        lines.extend(_table(["publisher", "delivered/s", "range", "x fedmsg", "x floor",
                             "sent/s", "messages", "lost"], rows))
        lines.append("(rounds of all publishers taken in turn; x fedmsg and x floor: median of "
                     "the ratios of paired rounds, against fedmsg 1.1.7 publish with modname "
                     "given and the floor; sent/s: the publisher's own pace, its queue may "
                     "still be draining)")

    if results["sweep"]:
        sizes = results["workload"]["sweep_sizes"]
        lines.append("")
        lines.append("Delivered messages a second by body size (median of %d rounds):"
                     % plan["sweep_rounds"])
        rows = []
        for key, by_size in results["sweep"].items():
            row = [_label(key)]
            for size in sizes:
                figure = by_size.get(str(size))
                text = rate_text(figure and figure["median_per_s"])
                if figure and figure["lost"]:
                    text += " (LOST %d)" % figure["lost"]
                row.append(text)
            rows.append(row)
        lines.extend(_table(["publisher"] + ["%d B" % s for s in sizes], rows))

    if results.get("instructions"):
        lines.append("")
        lines.append("Instructions per message in the publishing thread (callgrind; the "
                     "corpus; independent of the machine's load; kernel and ZeroMQ I/O thread "
                     "not counted):")
        counted = results["instructions"]
        baseline = counted.get("fedmsg", {}).get("instructions_per_message")
        floor = counted.get("floor", {}).get("instructions_per_message")
        rows = []
        for key, figure in counted.items():
            per_message = figure["instructions_per_message"]
            rows.append([_label(key), "{:,.0f}".format(per_message),
                         ratio_text(baseline / per_message) if baseline else "-",
                         ratio_text(floor / per_message) if floor else "-",
                         "{:,}".format(figure["messages"])])
        lines.extend(_table(["publisher", "instructions/msg", "fedmsg/this", "floor/this",
                             "messages"], rows))

    if results["latency"]:
        lines.append("")
        lines.append("Latency, publish call to receipt (same machine clock), at a steady "
                     "%d messages a second for %.1f s; median over %d alternating runs:" % (
                         plan["latency_rate"], plan["latency_seconds"],
                         plan.get("latency_repeats", 1)))
        rows = []
        for key, figure in results["latency"].items():
            def us(name):
                value = figure.get(name)
                return "-" if value is None else "%.0f us" % value
            rows.append([_label(key), us("p50_us"), us("p90_us"), us("p99_us"), us("p999_us"),
                         us("max_us"), "%s/%s" % (figure["received"], figure["sent"]),
                         rate_text(figure["achieved_per_s"])])
        lines.extend(_table(["publisher", "p50", "p90", "p99", "p99.9", "max",
                             "received/sent", "pace/s"], rows))

    memory = results.get("memory")
    if memory:
        lines.append("")
        lines.append(
            "Memory of the publisher (fastfedmsg.publish, modname given) over %s messages "
            "with a draining subscriber (%s received; high_water_mark 1000, "
            "on_full='block', so the queue is bounded): resident %s after %s warm-up "
            "messages, %s when sending ended, %s after the subscriber drained, peak %s; "
            "growth after warm-up %s (drained) / %s (end of sending)" % (
                "{:,}".format(memory["messages"]), "{:,}".format(memory["received"]),
                bytes_text(memory["warm_rss"]), "{:,}".format(memory["warmup_messages"]),
                bytes_text(memory["end_rss"]), bytes_text(memory["drained_rss"]),
                bytes_text(memory["peak_rss"]), bytes_text(memory["growth_after_drain"]),
                bytes_text(memory["growth_after_warmup"])))

    if results["init"]:
        lines.append("")
        lines.append("init(post_init_sleep=0), then destroy(), repeated:")
        rows = [[library, "%.2f ms" % figure["median_ms"], "%.2f ms" % figure["p90_ms"],
                 "%.2f ms" % figure["min_ms"], "%.2f ms" % figure["first_ms"],
                 str(figure["repeats"])]
                for library, figure in results["init"].items()]
        lines.extend(_table(["library", "median", "p90", "min", "first", "repeats"], rows))

    for name, value in results.get("extra", {}).items():
        lines.append("")
        lines.append("benchmarks.%s:" % name)
        lines.extend(_extra_lines(value))

    lines.append("")
    lines.append("Targets of issue 5 (reported, never enforced):")
    width = max(len(t["target"]) for t in results["targets"])
    for target in results["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
        lines.append("  %-*s  %-22s %s" % (width, target["target"], target["text"], verdict))

    if results["errors"]:
        lines.append("")
        lines.append("Errors (these parts were not measured):")
        for error in results["errors"]:
            lines.append("  %s: %s" % (error["what"], error["error"].splitlines()[0]))
    return "\n".join(lines)


def _extra_lines(value, indent="  "):
    """Readable lines for another benchmark's result: nested dicts indented,
    long lists (samples kept for --json) summarised by their length."""
    if isinstance(value, str):
        return [indent + line for line in value.splitlines()]
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict):
                lines.append("%s%s:" % (indent, key))
                lines.extend(_extra_lines(item, indent + "  "))
            elif isinstance(item, (list, tuple)) and len(item) > 8:
                lines.append("%s%s: %d values (see --json)" % (indent, key, len(item)))
            else:
                lines.append("%s%s: %s" % (indent, key, item))
        return lines
    if isinstance(value, (list, tuple)):
        return ["%s%s" % (indent, item) for item in value]
    return ["%s%r" % (indent, value)]


def plot(results, path):
    """Draw delivered rate against body size for each publisher into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    sizes = results["workload"]["sweep_sizes"]
    figure, axes = pyplot.subplots(figsize=(9, 5.5))
    for key, by_size in results["sweep"].items():
        points = [(size, by_size[str(size)]["median_per_s"]) for size in sizes
                  if str(size) in by_size and by_size[str(size)]["median_per_s"]]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                      label=_label(key), linestyle="--" if key == "floor" else "-")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(sizes)
    axes.set_xticklabels(["%d B" % s if s < 1024 else "%d KiB" % (s // 1024) for s in sizes])
    axes.set_xlabel("message body size (encoded JSON)")
    axes.set_ylabel("messages delivered per second")
    versions = results["versions"]
    axes.set_title("fastfedmsg %s vs fedmsg %s: delivered rate by body size (%s run)" % (
        versions.get("fastfedmsg"), versions.get("fedmsg"), results["mode"]), fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)

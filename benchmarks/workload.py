"""The messages the benchmarks send: the shipped corpus of real Fedora messages.

A work item is ``(modname, topic, msg)``, what a fedmsg caller passes to
``publish(topic=topic, msg=msg, modname=modname)``.  The corpus topics
(``org.fedoraproject.prod.git.branch``) give modname ``git`` and topic
``branch``; every publisher then sends on ``org.fedoraproject.dev.git.branch``.

For the body-size sweep, bodies of an exact encoded size are built from the
same real messages: whole corpus bodies nested under ``m0``, ``m1``... while
they fit, then a ``pad`` string of ASCII text cut from the corpus to reach
the size exactly (with sorted keys, compact separators).
"""

import json
import pathlib

import orjson

import fastfedmsg

CORPUS = pathlib.Path(fastfedmsg.__file__).parent / "data" / "fedora-messages.jsonl"

#: Body sizes of the sweep, 100 B to 64 KiB.
SWEEP_SIZES = (100, 1024, 4096, 16384, 65536)

#: How many different bodies of one size are cycled through.
BODIES_PER_SIZE = 16

#: Markers the subscriber looks for in a topic frame.  No corpus topic
#: contains "bench.".
PROBE_TOPIC = "bench.probe"
END_TOPIC = "bench.end"
PROBE_MARKER = PROBE_TOPIC.encode("ascii")
END_MARKER = END_TOPIC.encode("ascii")

#: Where the latency run puts the send time (ns since the epoch) in a body.
STAMP_FIELD = "bench_sent_ns"
STAMP_KEY = b'"bench_sent_ns":'

TOPIC_PREFIX = "org.fedoraproject"
ENVIRONMENT = "dev"


def encoded_size(msg):
    return len(orjson.dumps(msg, option=orjson.OPT_SORT_KEYS))


def split_topic(full_topic):
    """``org.fedoraproject.prod.git.branch`` -> ``("git", "branch")``."""
    parts = full_topic.split(".")
    rest = parts[3:] if len(parts) > 3 else parts[-1:]
    modname = rest[0]
    topic = ".".join(rest[1:]) or "unspecified"
    return modname, topic


def load_corpus():
    """The corpus as a list of work items, in file order."""
    items = []
    with open(CORPUS, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            modname, topic = split_topic(record["topic"])
            items.append((modname, topic, record["msg"]))
    if not items:
        raise RuntimeError("the corpus %s holds no messages; reinstall fastfedmsg" % CORPUS)
    return items


def _is_ascii(msg):
    return max(orjson.dumps(msg), default=0) < 128


def _filler_text(corpus):
    # Real text without characters JSON would escape, so that the encoded
    # size of the padding is its length.
    pieces = []
    for _modname, _topic, msg in corpus:
        text = orjson.dumps(msg).decode("ascii", "ignore")
        pieces.append("".join(c for c in text if c.isalnum() or c in " .,:-_/"))
    return " ".join(pieces)


def sized_bodies(size, corpus=None, count=BODIES_PER_SIZE):
    """``count`` work items whose bodies encode to exactly ``size`` bytes."""
    corpus = corpus or load_corpus()
    plain = [item for item in corpus if _is_ascii(item[2])]
    filler = _filler_text(plain)
    while len(filler) < size:
        filler += " " + filler
    items = []
    for index in range(count):
        modname, topic, _msg = plain[index * 7 % len(plain)]
        body = {}
        tries = 0
        cursor = index * 31
        # Room for ,"pad":"" plus at least one character of padding.
        while tries < 50:
            candidate = plain[cursor % len(plain)][2]
            cursor += 1
            trial = dict(body)
            trial["m%02d" % len(body)] = candidate
            if encoded_size(trial) + 10 <= size:
                body = trial
                tries = 0
            else:
                tries += 1
        overhead = encoded_size(dict(body, pad=""))
        body["pad"] = filler[index:index + max(size - overhead, 0)]
        if encoded_size(body) != size:
            raise RuntimeError("could not build a body of %d bytes (got %d)"
                               % (size, encoded_size(body)))
        items.append((modname, topic, body))
    return items


def workload(name, corpus=None):
    """The work items for ``name``: "corpus" or a body size in bytes as text."""
    corpus = corpus or load_corpus()
    if name == "corpus":
        return corpus
    return sized_bodies(int(name), corpus)

"""fastfedmsg against the real fedmsg 1.1.7: the same input must give the same frames.

Each test binds fastfedmsg and fedmsg (run in this process, see oracle.py)
on two free ports, connects a real SUB socket to each and waits for it with
probes, then publishes the same input with both and compares what arrives:
frame 0 byte for byte, and the decoded envelope apart from msg_id, timestamp
and i, whose formats are checked instead (local year + '-' + a version-4
UUID; an int close to now; a counter from 1 per context).  Where fedmsg
refuses an input, fastfedmsg must refuse it too, with the same builtin
exception (TypeError or ValueError), and send nothing: the next message to
arrive must be a good one sent after the refusal.
"""

import collections
import datetime
import decimal
import enum
import json
import math
import socket
import time
import uuid

import fedmsg
import fedmsg.config
import pytest
import zmq

import fastfedmsg
import oracle
from fastfedmsg import _core
from conftest import Subscriber, free_port, load_corpus, write_config

pytestmark = pytest.mark.integration

CORPUS = load_corpus()
PROBE_BYTES = oracle.PROBE.encode("ascii")
NAN, INF = float("nan"), float("inf")


def split_topic(full):
    """(topic_prefix, environment, modname, topic) that re-create ``full``.

    ``prefix.env.modname.topic...`` splits at the dots; the few three-part
    topics (``fedoracollege.media.upload``) have no environment and are
    re-created through a modname that already carries the prefix.
    """
    parts = full.split(".")
    if len(parts) >= 5:
        return ".".join(parts[:2]), parts[2], parts[3], ".".join(parts[4:])
    return parts[0], "prod", ".".join(parts[:-1]), parts[-1]


CORPUS_GROUPS = collections.defaultdict(list)
for _message in CORPUS:
    CORPUS_GROUPS[split_topic(_message["topic"])[:2]].append(_message)


class Outcome:
    """What one library did with one publish: the frames that arrived, or the error."""

    def __init__(self, frames=None, error=None, started=None, finished=None):
        self.frames = frames
        self.error = error
        self.started = started
        self.finished = finished


class Pair:
    """fastfedmsg and fedmsg side by side in this thread, each with a subscriber."""

    def __init__(self, tmp_path, topic_prefix="org.fedoraproject", environment="prod"):
        config = dict(topic_prefix=topic_prefix, environment=environment,
                      zmq_linger=0, post_init_sleep=0)
        fast_port, fedmsg_port = free_port(), free_port()
        fastfedmsg.init(name="compat.fast",
                        endpoints={"compat.fast": ["tcp://127.0.0.1:%d" % fast_port]},
                        **config)
        self.fedmsg = oracle.FedmsgPublisher(tmp_path, "compat.fedmsg", fedmsg_port, **config)
        self.fast_sub = Subscriber("tcp://127.0.0.1:%d" % fast_port)
        self.fedmsg_sub = Subscriber("tcp://127.0.0.1:%d" % fedmsg_port)
        #: envelopes fastfedmsg's context has sent: what its next ``i`` must follow.
        self.fast_sent = 0
        self.fast_sub.wait_connected(self.fast_probe, probe_topic=PROBE_BYTES)
        self.fedmsg_sub.wait_connected(self.fedmsg.probe, probe_topic=PROBE_BYTES)

    def fast_probe(self):
        fastfedmsg.publish(topic=oracle.PROBE, msg={}, modname="oracle")
        self.fast_sent += 1

    def _run(self, publish, subscriber, topic, msg, modname):
        started = time.time()
        try:
            publish(topic=topic, msg=msg, modname=modname)
        except Exception as exc:  # compared with the other library below
            return Outcome(error=exc)
        finished = time.time()
        return Outcome(frames=oracle.recv_real(subscriber), started=started, finished=finished)

    def publish_fast(self, topic, msg, modname):
        outcome = self._run(fastfedmsg.publish, self.fast_sub, topic, msg, modname)
        if outcome.error is None:
            self.fast_sent += 1
        return outcome

    def publish_fedmsg(self, topic, msg, modname):
        return self._run(self.fedmsg.publish, self.fedmsg_sub, topic, msg, modname)

    def compare(self, topic, msg, modname):
        """Publish with both; assert the same result.  Returns fastfedmsg's Outcome."""
        reference = self.publish_fedmsg(topic, msg, modname)
        counted_before = fastfedmsg.current_context().publisher.i
        fast = self.publish_fast(topic, msg, modname)

        if reference.error is not None:
            assert isinstance(reference.error, (TypeError, ValueError)), reference.error
            assert fast.error is not None, (
                "fedmsg refused this input with %r but fastfedmsg sent %r"
                % (reference.error, fast.frames))
            family = TypeError if isinstance(reference.error, TypeError) else ValueError
            assert isinstance(fast.error, family), (
                "fedmsg raised %r, fastfedmsg %r" % (reference.error, fast.error))
            assert fastfedmsg.current_context().publisher.i == counted_before
            self.assert_nothing_was_sent()
            return fast

        assert fast.error is None, (
            "fedmsg sent this input, fastfedmsg refused it: %r" % (fast.error,))
        oracle.assert_same_envelope(fast.frames, reference.frames)
        fast_envelope = oracle.decode(fast.frames)
        oracle.check_generated_fields(fast_envelope, fast.started, fast.finished)
        assert fast_envelope["i"] == self.fast_sent
        reference_envelope = oracle.decode(reference.frames)
        oracle.check_generated_fields(reference_envelope, reference.started, reference.finished)
        assert reference_envelope["i"] == self.fedmsg.i
        return fast

    def assert_nothing_was_sent(self):
        """After a refusal, the next message on each socket is a good one sent now."""
        fast = self.publish_fast("after.refusal", {"good": True}, "compat")
        reference = self.publish_fedmsg("after.refusal", {"good": True}, "compat")
        for outcome in (fast, reference):
            assert outcome.error is None
            assert outcome.frames[0].endswith(b".compat.after.refusal")
            assert oracle.decode(outcome.frames)["msg"] == {"good": True}

    def close(self):
        self.fast_sub.close()
        self.fedmsg_sub.close()
        self.fedmsg.close()
        fastfedmsg.destroy()


@pytest.fixture
def make_pair(config_dir, tmp_path):
    made = []

    def make(**kw):
        pair = Pair(tmp_path, **kw)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.close()
    oracle.close_fedmsg()


# -- every corpus message -------------------------------------------------------

@pytest.mark.parametrize("group", sorted(CORPUS_GROUPS), ids=".".join)
def test_corpus_messages_match_fedmsg(make_pair, group):
    pair = make_pair(topic_prefix=group[0], environment=group[1])

    for message in CORPUS_GROUPS[group]:
        _prefix, _env, modname, topic = split_topic(message["topic"])
        fast = pair.compare(topic, message["msg"], modname)

        envelope = oracle.decode(fast.frames)
        assert envelope["topic"] == message["topic"]
        assert fast.frames[0] == message["topic"].encode("utf-8")
        assert oracle.canonical(envelope["msg"]) == oracle.canonical(message["msg"])


def test_corpus_is_covered_whole():
    assert sum(len(group) for group in CORPUS_GROUPS.values()) == len(CORPUS) == 500


# -- edge inputs ------------------------------------------------------------------

class WithJson:
    def __init__(self, value):
        self.value = value

    def __json__(self):
        return self.value


class JsonColour(enum.Enum):
    RED = 1

    def __json__(self):
        return {"colour": self.name}


class BrokenJson:
    def __json__(self):
        raise TypeError("this object cannot be shown")


class LoudStr(str):
    def __str__(self):
        return "not the value"


class LoudInt(int):
    def __int__(self):
        return -1


class LoudFloat(float):
    def __float__(self):
        return -1.0


class PlainDict(dict):
    pass


class ItemsDict(dict):
    def items(self):
        return [("from_items", 1)]


class JsonDict(dict):
    def __json__(self):
        return "never used: the stdlib encodes a dict subclass as a dict"


class PlainList(list):
    pass


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


class Mode(enum.StrEnum):
    FAST = "fast"


Point = collections.namedtuple("Point", "x y")

circular = {"name": "loop"}
circular["self"] = circular

deep = []
_inner = deep
for _ in range(300):
    _inner.append([])
    _inner = _inner[0]
_inner.append("bottom")

#: (id, topic, msg, modname); modnames and topics come from the corpus.
EDGE_INPUTS = [
    # text
    ("non_ascii_text", "build.state.change",
     {"text": "Zoë ☃ 日本語 🎉", "ключ": "значение", "tab\t": "nul\x00"}, "buildsys"),
    ("non_ascii_string_body", "package.update", "déjà vu ✓", "pkgdb"),
    ("lone_surrogate", "package.update", {"broken": "\ud800 half"}, "pkgdb"),
    ("string_body", "package.update", "just text", "pkgdb"),
    # numbers
    ("ints_beyond_64_bits", "build.state.change",
     {"big": 2 ** 70, "negative": -(2 ** 70), "u64_max": 2 ** 64 - 1,
      "i64_min": -(2 ** 63), "u64_over": 2 ** 64, "list": [2 ** 100]}, "buildsys"),
    ("nan_and_infinities", "build.state.change",
     {"nan": NAN, "inf": INF, "ninf": -INF, "nested": [NAN, {"deep": -INF}]}, "buildsys"),
    ("nan_in_a_set", "build.state.change", {"values": {NAN}}, "buildsys"),
    ("nan_from___json__", "build.state.change", {"obj": WithJson({"x": NAN})}, "buildsys"),
    ("floats", "build.state.change",
     {"small": 1.5e-07, "large": 1e16, "neg_zero": -0.0, "pi": math.pi}, "buildsys"),
    # keys
    ("int_keys", "build.state.change", {10: "ten", 2: "two", -1: "minus"}, "buildsys"),
    ("float_keys", "build.state.change", {1.5: "a", 2: "b"}, "buildsys"),
    ("bool_keys", "build.state.change", {True: 1, False: 0}, "buildsys"),
    ("none_key", "build.state.change", {None: 1}, "buildsys"),
    ("str_and_int_keys", "build.state.change", {1: "a", "b": 2}, "buildsys"),
    ("tuple_key", "build.state.change", {(1, 2): "a"}, "buildsys"),
    ("nested_int_keys", "build.state.change", {"outer": {3: [1], 1: [2]}}, "buildsys"),
    # dates and times
    ("datetime", "update.request.testing",
     {"when": datetime.datetime(2020, 2, 29, 12, 30, 15, 250000)}, "bodhi"),
    ("date", "update.request.testing", {"day": datetime.date(2020, 2, 29)}, "bodhi"),
    ("aware_datetime", "update.request.testing",
     {"when": datetime.datetime(2021, 6, 1, 8, 0, tzinfo=datetime.timezone.utc)}, "bodhi"),
    ("datetimes_in_list", "update.request.testing",
     [datetime.datetime(2019, 1, 1), datetime.date(2019, 1, 2)], "bodhi"),
    ("struct_time", "update.request.testing", {"t": time.localtime(86400 * 365)}, "bodhi"),
    ("struct_time_body", "update.request.testing", time.gmtime(0), "bodhi"),
    ("time_of_day", "update.request.testing", {"t": datetime.time(1, 2)}, "bodhi"),
    ("timedelta", "update.request.testing", {"t": datetime.timedelta(days=1)}, "bodhi"),
    # containers
    ("set_of_ints", "package.update", {"ids": {3, 1, 2}}, "pkgdb"),
    ("set_of_text", "package.update", {"tags": {"a", "b", "c"}}, "pkgdb"),
    ("empty_set", "package.update", {"none": set()}, "pkgdb"),
    ("set_with_datetime", "package.update", {"s": {datetime.date(2020, 1, 1)}}, "pkgdb"),
    ("frozenset", "package.update", {"f": frozenset([1])}, "pkgdb"),
    ("namedtuple", "package.update", {"p": Point(1, [2, 3])}, "pkgdb"),
    ("tuple_body", "package.update", (1, "two", None), "pkgdb"),
    ("list_body", "package.update", [1, "two", {"three": 3}], "pkgdb"),
    ("deep_nesting", "package.update", {"deep": deep}, "pkgdb"),
    ("circular", "package.update", circular, "pkgdb"),
    # objects
    ("__json__", "tag.update", {"tag": WithJson({"label": "x", "votes": 3})}, "fedoratagger"),
    ("__json___body", "tag.update", WithJson({"label": "x"}), "fedoratagger"),
    ("__json___datetime", "tag.update", {"o": WithJson(datetime.date(2020, 1, 1))},
     "fedoratagger"),
    ("__json___nested", "tag.update",
     WithJson([WithJson(1), WithJson({"d": datetime.date(2020, 1, 1), "s": {2, 1}})]),
     "fedoratagger"),
    ("__json___subclasses", "tag.update", {"o": WithJson({"s": LoudStr("x"), "i": Level.HIGH})},
     "fedoratagger"),
    ("__json___uuid", "tag.update", {"o": WithJson(uuid.UUID(int=1))}, "fedoratagger"),
    ("__json___enum", "tag.update", {"o": WithJson([Colour.RED])}, "fedoratagger"),
    ("__json___big_int", "tag.update", {"o": WithJson({"n": 2 ** 80})}, "fedoratagger"),
    ("__json___raises", "tag.update", {"o": BrokenJson()}, "fedoratagger"),
    ("enum_with___json__", "tag.update", {"e": JsonColour.RED}, "fedoratagger"),
    ("str_subclass", "tag.update", {"s": LoudStr("value")}, "fedoratagger"),
    ("int_subclass", "tag.update", {"i": LoudInt(7)}, "fedoratagger"),
    ("float_subclass", "tag.update", {"f": LoudFloat(2.5)}, "fedoratagger"),
    ("float_subclass_nan", "tag.update", {"f": LoudFloat(NAN)}, "fedoratagger"),
    ("dict_subclass", "tag.update", PlainDict(b=1, a=2), "fedoratagger"),
    ("dict_subclass_items", "tag.update", {"d": ItemsDict(a=1)}, "fedoratagger"),
    ("dict_subclass___json__", "tag.update", {"d": JsonDict(a=1)}, "fedoratagger"),
    ("ordered_dict", "tag.update", collections.OrderedDict([("b", 1), ("a", 2)]),
     "fedoratagger"),
    ("default_dict", "tag.update", {"d": collections.defaultdict(int, a=1)}, "fedoratagger"),
    ("counter", "tag.update", {"c": collections.Counter("abca")}, "fedoratagger"),
    ("list_subclass", "tag.update", {"l": PlainList([1, 2])}, "fedoratagger"),
    ("int_enum", "tag.update", {"e": Level.HIGH}, "fedoratagger"),
    ("str_enum", "tag.update", {"e": Mode.FAST}, "fedoratagger"),
    ("plain_enum", "tag.update", {"e": Colour.RED}, "fedoratagger"),
    ("uuid", "tag.update", {"u": uuid.UUID(int=5)}, "fedoratagger"),
    ("decimal", "tag.update", {"d": decimal.Decimal("1.5")}, "fedoratagger"),
    ("bytes_value", "tag.update", {"b": b"raw"}, "fedoratagger"),
    ("plain_object", "tag.update", {"o": object()}, "fedoratagger"),
    ("complex", "tag.update", {"c": 1j}, "fedoratagger"),
    # empty bodies become {}
    ("none_body", "user.update", None, "fas"),
    ("empty_dict_body", "user.update", {}, "fas"),
    ("empty_list_body", "user.update", [], "fas"),
    ("empty_string_body", "user.update", "", "fas"),
    ("zero_body", "user.update", 0, "fas"),
    ("false_body", "user.update", False, "fas"),
    ("true_body", "user.update", True, "fas"),
    ("number_body", "user.update", 42.5, "fas"),
    # topics and modnames
    ("empty_topic", "", {"a": 1}, "fas"),
    ("none_topic", None, {"a": 1}, "fas"),
    ("zero_topic", 0, {"a": 1}, "fas"),
    ("non_ascii_topic", "überprüfung.ß.日本", {"a": 1}, "fas"),
    ("non_ascii_modname", "upload.complete", {"a": 1}, "módulo"),
    ("cjk_modname", "upload.complete", {"a": 1}, "日本"),
    ("modname_carries_prefix", "upload.complete", {"a": 1}, "org.fedoraproject.stg.wiki"),
    ("topic_carries_prefix", "fedoraproject.prod.buildsys.build.tag", {"a": 1}, "org"),
    ("prefix_without_dot_boundary", "tag", {"a": 1}, "org.fedoraprojectx"),
    ("topic_with_spaces", "a topic with spaces", {"a": 1}, "fas"),
    ("str_subclass_topic", LoudStr("user.update"), {"a": 1}, "fas"),
    ("str_subclass_modname", "user.update", {"a": 1}, LoudStr("fas")),
    ("int_topic", 5, {"a": 1}, "fas"),
    ("list_topic", ["a"], {"a": 1}, "fas"),
    ("int_modname", "user.update", {"a": 1}, 5),
]


@pytest.mark.parametrize("topic, msg, modname",
                         [pytest.param(*case[1:], id=case[0]) for case in EDGE_INPUTS])
def test_edge_input_matches_fedmsg(make_pair, topic, msg, modname):
    make_pair().compare(topic, msg, modname)


def test_a_run_of_edge_inputs_keeps_one_counter(make_pair):
    """Refusals in between never disturb the counter or the socket."""
    pair = make_pair()
    for _case_id, topic, msg, modname in EDGE_INPUTS:
        pair.compare(topic, msg, modname)


# -- modname guessing -------------------------------------------------------------

def test_guessed_modname_matches_fedmsg(make_pair):
    pair = make_pair()

    fastfedmsg.publish(topic="guessed", msg={"a": 1})
    pair.fast_sent += 1
    fedmsg.publish(topic="guessed", msg={"a": 1})

    fast_frames = oracle.recv_real(pair.fast_sub)
    fedmsg_frames = oracle.recv_real(pair.fedmsg_sub)
    oracle.assert_same_envelope(fast_frames, fedmsg_frames)
    assert fast_frames[0] == ("org.fedoraproject.prod.%s.guessed"
                              % __name__.split(".")[0]).encode("utf-8")


def test_guessed_modname_from_a_nested_function_and_send_message(make_pair):
    pair = make_pair()

    def inner(publish):
        publish(topic="nested", msg=None)

    inner(fastfedmsg.send_message)
    inner(fedmsg.send_message)
    oracle.assert_same_envelope(oracle.recv_real(pair.fast_sub),
                                oracle.recv_real(pair.fedmsg_sub))


def test_guessed_modname_from_another_module(make_pair):
    pair = make_pair()

    oracle.publish_without_modname(fastfedmsg.publish, "elsewhere")
    oracle.publish_without_modname(fedmsg.publish, "elsewhere")

    fast_frames = oracle.recv_real(pair.fast_sub)
    oracle.assert_same_envelope(fast_frames, oracle.recv_real(pair.fedmsg_sub))
    assert fast_frames[0] == b"org.fedoraproject.prod.oracle.elsewhere"


# -- counters, hooks --------------------------------------------------------------

def test_counter_starts_at_one_in_each_new_context(make_pair):
    first = make_pair()
    first.compare("count", {"n": 1}, "compat")
    first.close()

    second = make_pair()
    assert fastfedmsg.current_context().publisher.i == second.fast_sent
    second.compare("count", {"n": 2}, "compat")
    assert oracle.decode(second.publish_fast("count", {}, "compat").frames)["i"] == \
        second.fast_sent


def test_pre_fire_hook_sees_and_changes_the_same_envelope(make_pair):
    pair = make_pair()
    seen = {}

    def hook_for(library):
        def hook(envelope):
            seen[library] = dict(envelope)
            envelope["msg"]["hooked"] = library
        return hook

    fastfedmsg.publish(topic="hooked", msg={"a": 1}, modname="compat",
                       pre_fire_hook=hook_for("fast"))
    pair.fast_sent += 1
    fedmsg.publish(topic="hooked", msg={"a": 1}, modname="compat",
                   pre_fire_hook=hook_for("fedmsg"))

    assert set(seen["fast"]) == set(seen["fedmsg"]) == oracle.ENVELOPE_KEYS
    assert seen["fast"]["i"] == pair.fast_sent
    fast = oracle.decode(oracle.recv_real(pair.fast_sub))
    reference = oracle.decode(oracle.recv_real(pair.fedmsg_sub))
    assert fast["msg"] == {"a": 1, "hooked": "fast"}
    assert reference["msg"] == {"a": 1, "hooked": "fedmsg"}
    assert fast["msg_id"] == seen["fast"]["msg_id"]
    assert sorted(fast) == sorted(reference)


def test_timestamp_is_int_time_time_across_a_second_boundary():
    """fedmsg stamps int(time.time()); so must fastfedmsg, right after a second starts
    too (the coarse clock behind C's time() still shows the previous second then)."""

    publisher = _core.Publisher(None, "org.fedoraproject", "prod", "u")
    start = time.time()
    boundary = int(start) + 1
    checked = 0
    while time.time() < boundary + 0.05:
        before = time.time()
        _frame0, _envelope, frame1 = publisher.build("tick", {}, "compat")
        after = time.time()
        stamp = json.loads(frame1)["timestamp"]
        assert int(before) <= stamp <= int(after), (before, stamp, after)
        checked += 1
    assert checked > 100


def test_guessed_name_and_endpoint_fallback_match_fedmsg(config_dir, tmp_path):
    """Without a name, both use this module's package + '.' + the short host name,
    and both bind the first free endpoint listed for it."""
    name = "%s.%s" % (__name__.split(".")[0], socket.gethostname().split(".")[0])
    ports = [free_port(), free_port()]
    endpoints = {name: ["tcp://127.0.0.1:%d" % port for port in ports]}
    write_config(config_dir, endpoints=endpoints, post_init_sleep=0, zmq_linger=0)
    reference_config = tmp_path / "fedmsg-guessed-name.py"
    reference_config.write_text("config = %r\n" % {"endpoints": endpoints})

    fast = fastfedmsg.init()
    fedmsg.config.load_config(filenames=[str(reference_config)], invalidate_cache=True)
    try:
        reference = fedmsg.init(post_init_sleep=0)
        assert fast.name == reference.c["name"] == name
        assert fast.endpoint == "tcp://*:%d" % ports[0]
        # fastfedmsg holds the first port, so fedmsg moved on to the second.
        assert reference.publisher.getsockopt(zmq.LAST_ENDPOINT) == \
            ("tcp://0.0.0.0:%d" % ports[1]).encode("ascii")
    finally:
        oracle.close_fedmsg()

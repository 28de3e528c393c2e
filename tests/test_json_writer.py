"""The hot path's JSON writer (fastfedmsg/_json_writer.h) against fedmsg's encoder.

Plain bodies are written by our own C code, so these tests compare it, value
by value, with what fedmsg's encoder (json with sort_keys, compact
separators, ensure_ascii) gives for the same input: the decoded values must
be the same, types included (1 is not 1.0, True is not 1), and for bodies
without floats the bytes must be those of the standard library's encoder
with our options (dict order, raw UTF-8).  The inputs are the ones where a
hand-written encoder goes wrong: every character that needs an escape at
every position around the 16-byte blocks, text that ends next to a page
boundary, every kind of str, integers and floats at their edges, the
nesting limit, bodies the writer must give up on, and a __json__ that
encodes while the writer's buffer is in use.  No network: unit tests.
"""

import json
import math
import random
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfedmsg import _core, errors

import fedmsg.encoding

encode = _core.encode_json


def fedmsg_bytes(value):
    return fedmsg.encoding.dumps(value).encode("utf-8")


def stdlib_unsorted(value):
    """What the writer must give byte for byte for bodies without floats."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def same_value(ours, reference):
    """Both texts decode to the same JSON value, types and NaN included."""
    mine, theirs = json.loads(ours), json.loads(reference)
    return json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def assert_like_fedmsg(value):
    ours = encode(value)
    assert same_value(ours, fedmsg_bytes(value)), (value, ours)
    return ours


SPECIALS = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f"]


@pytest.mark.parametrize("length", range(0, 70))
def test_every_escape_at_every_position_of_ascii_text(length):
    for special in SPECIALS:
        for position in range(length):
            text = "".join(special if k == position else "abcdefghij"[k % 10]
                           for k in range(length))
            assert encode(text) == stdlib_unsorted(text)
            assert_like_fedmsg(text)
        plain = ("xyz0123456" * 8)[:length]
        assert encode(plain) == stdlib_unsorted(plain)


def test_text_that_ends_next_to_a_page_boundary():
    # Short ASCII text is read 16 bytes at a time only where that read cannot
    # cross into the next page; both sides of that line must be right.  The
    # characters of a compact ASCII str start right after its header.
    header = sys.getsizeof("") - 1
    near, far = 0, 0
    kept = []    # so that each new str lands somewhere else in memory
    for attempt in range(200000):
        length = attempt % 40 + 2
        text = ("%06d" % attempt + '"\\\n' + "q" * 40)[:length]
        kept.append(text)
        last = id(text) + header + length - 1
        if last % 4096 > 4096 - 16:
            near += 1
        else:
            far += 1
        assert encode(text) == stdlib_unsorted(text)
        if near >= 50 and far >= 50:
            break
    assert near >= 50 and far >= 50, (near, far)


@pytest.mark.parametrize("text", [
    "caf\u00e9", "\u00ff" * 20, "na\u00efve \"quoted\"\n",          # one byte a character
    "\u0100", "\u20ac 10", "\u2028\u2029", "\ufeff", "\uffff",     # two bytes
    "\U0001F600", "a\U0010FFFFb", "\U0001F600" * 17,               # four bytes
    "mixed ascii and \u00e9 and \u4e2d\u6587 and \U0001F680\t!",
])
def test_text_beyond_ascii_is_raw_utf8(text):
    assert encode(text) == stdlib_unsorted(text)
    assert json.loads(encode(text)) == text
    assert_like_fedmsg({"k\u00e9y": text, text: [text]})


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udbff\udc00", "x" * 20 + "\ud83d"])
def test_lone_surrogates_are_left_to_fedmsgs_encoder(text):
    # UTF-8 cannot carry them; the general path writes \\uXXXX as fedmsg does.
    assert encode(text) == fedmsg_bytes(text)
    assert encode({"a": [1, text]}) == fedmsg_bytes({"a": [1, text]})


@pytest.mark.parametrize("number", [
    0, 1, -1, 9, 10, 99, 100, 12345, -98765,
    2 ** 30 - 1, 2 ** 30, -(2 ** 30), 2 ** 31, 2 ** 32 + 7, 1344361406,
    2 ** 60 - 1, 2 ** 60, -(2 ** 60) - 1, 2 ** 63 - 1, -(2 ** 63),
    2 ** 63, 2 ** 64 - 1, 2 ** 64, -(2 ** 63) - 1, 10 ** 30, -(10 ** 40),
])
def test_integers_at_their_edges(number):
    assert encode(number) == str(number).encode()
    assert encode([number, {"n": number}]) == stdlib_unsorted([number, {"n": number}])


def test_bools_and_none_are_not_numbers():
    body = [True, False, None, 1, 0, {"t": True, "f": False, "n": None}]
    assert encode(body) == stdlib_unsorted(body)
    assert json.loads(encode(body)) == body
    assert [type(v) for v in json.loads(encode(body))][:5] == [bool, bool, type(None), int, int]


FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 0.2, 0.3, 2.5, 100.0, 3.14159, -273.15,
    1e-4, 1.5e-4, 9.999e-5, 1e-7, 1.5e-7, 5e-324, 2.2250738585072014e-308,
    1344350850.886738, 1344361406.0, 123456.789, 0.001, 0.000123,
    1e15, 9007199254740991.0, 9007199254740992.0, 9007199254740993.0, 1e16, 1e22,
    1.7976931348623157e308, -1.7976931348623157e308, 123456789012345.67,
]


def random_floats(count, seed=20261204):
    generator = random.Random(seed)
    values = []
    while len(values) < count:
        kind = len(values) % 4
        if kind == 0:
            value = struct.unpack("<d", struct.pack("<Q", generator.getrandbits(64)))[0]
        elif kind == 1:
            value = round(generator.uniform(-1e6, 1e6), generator.randint(0, 9))
        elif kind == 2:
            value = generator.uniform(1e9, 2e9)          # timestamps
        else:
            value = generator.randint(-10 ** 7, 10 ** 7) / 10 ** generator.randint(0, 12)
        if math.isfinite(value):
            values.append(value)
    return values


def test_floats_read_back_as_the_same_double():
    differs = 0
    for value in FLOATS + random_floats(50000):
        text = encode(value)
        back = json.loads(text)
        assert type(back) is float, (value, text)
        assert struct.pack("<d", back) == struct.pack("<d", value), (value, text)
        differs += text != repr(value).encode()
    # The text is repr's, except where the fast path picks the other of two
    # shortest neighbours (both read back as the same double): rare.
    assert differs < 100, differs


def test_floats_in_a_body_match_fedmsg():
    body = {"values": FLOATS, "nested": [{"f": value} for value in random_floats(200)]}
    assert_like_fedmsg(body)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_are_written_as_fedmsg_writes_them(value):
    assert encode(value) == fedmsg_bytes(value)
    assert encode({"x": [value]}) == fedmsg_bytes({"x": [value]})


def test_containers():
    cases = [{}, [], (), [[]], {"a": {}}, {"a": []}, [{}, [], ()], (1, "two", (3.0,)),
             {"": ""}, {"k": (None,)}, [[[[["deep"]]]]]]
    for value in cases:
        expected = stdlib_unsorted(value)
        assert encode(value) == expected, value
        assert_like_fedmsg(value)


def nested(depth):
    body = "leaf"
    for level in range(depth):
        body = [body] if level % 2 else {"k": body}
    return body


@pytest.mark.parametrize("depth", [1, 150, 199, 200, 201, 300])
def test_nesting_up_to_and_beyond_the_limit(depth):
    # Past 200 levels the writer gives up and fedmsg's encoder takes over.
    assert_like_fedmsg(nested(depth))


def test_bodies_the_writer_gives_up_on_still_match_fedmsg():
    import datetime
    import collections

    class Text(str):
        pass

    cases = [
        {1: "int keys", 2: "only"},
        {"when": datetime.datetime(2020, 5, 17, 12, 30)},
        {"day": datetime.date(2021, 1, 2)},
        {"tags": {"one"}},
        {"ordered": collections.OrderedDict(b=1, a=2)},
        {"sub": Text("subclass of str")},
        {"big": [2 ** 70, "after"]},
        {"a": "x" * 30, "later": float("nan")},   # gives up after writing a lot
    ]
    for value in cases:
        assert_like_fedmsg(value)


def test_the_corpus_byte_for_byte_where_no_float_is_involved(corpus_bodies):
    checked = 0
    for body in corpus_bodies:
        if any(isinstance(value, float) for value in _leaves(body)):
            assert_like_fedmsg(body)
            continue
        assert encode(body) == stdlib_unsorted(body)
        checked += 1
    assert checked > 300, checked


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@pytest.fixture(scope="module")
def corpus_bodies():
    from conftest import load_corpus

    return [envelope["msg"] for envelope in load_corpus()]


def test_a_body_larger_than_the_kept_buffer_then_small_ones():
    huge = {"blob": "z" * (3 << 20), "list": list(range(100000))}
    assert json.loads(encode(huge)) == huge
    assert encode({"small": 1}) == b'{"small":1}'
    long_escapes = "\n" * 300000      # six bytes of output a character at most
    assert json.loads(encode(long_escapes)) == long_escapes


def test_a_json_hook_that_encodes_while_the_buffer_is_in_use():
    # The general path runs __json__, which may itself encode or publish: the
    # outer body must not be overwritten by the inner one.
    class Reentrant:
        def __json__(self):
            inner = encode({"inner": "i" * 5000, "n": list(range(300))})
            return {"inner_length": len(inner)}

    body = {"before": "b" * 3000, "hooked": Reentrant(), "after": ["a"] * 50}
    assert_like_fedmsg(body)

    publisher = _core.Publisher(None, "org.fedoraproject", "dev", "someone")
    _frame0, _none, frame1 = publisher.build("reentrant", body, "tests")
    envelope = json.loads(frame1)
    assert envelope["msg"]["before"] == "b" * 3000 and envelope["msg"]["after"] == ["a"] * 50
    assert envelope["msg"]["hooked"]["inner_length"] > 5000


json_values = st.recursive(
    st.one_of(
        st.text(), st.text(alphabet=st.characters(max_codepoint=0x7F)),
        st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=20), children, max_size=6),
    ),
    max_leaves=30,
)


@settings(max_examples=1500, derandomize=True, database=None, deadline=None)
@given(value=json_values)
def test_generated_values_decode_as_fedmsgs_do(value):
    assert_like_fedmsg(value)


def test_dicts_of_every_shape_are_walked_in_their_order():
    # The writer reads CPython's entry array for dicts it knows the layout of
    # (checked against PyDict_Next at import: DIRECT_DICT_WALK) and walks the
    # others with PyDict_Next; both must give every item once, in order.
    removed = {"k%d" % n: n for n in range(2000)}
    for n in range(0, 2000, 3):
        del removed["k%d" % n]
    removed["late"] = "added after the removals"

    once_general = {1: "int key", "text": "value"}
    del once_general[1]            # str keys only now, in a table built for any key

    class Plain:
        pass

    instance = Plain()
    instance.alpha, instance.beta = 1, [2]

    emptied = {"gone": 1}
    del emptied["gone"]

    for value in (removed, once_general, vars(instance), dict(vars(instance)), emptied,
                  {"nested": removed, "list": [once_general, emptied]}):
        encoded = encode(value)
        assert encoded == stdlib_unsorted(value)
        assert list(json.loads(encoded)) == list(value)
    # Where the layout is known, the check at import must have kept the
    # direct walk (else every dict silently takes the slower road).
    assert _core.DIRECT_DICT_WALK is ((3, 11) <= sys.version_info[:2] <= (3, 13))


MUTATING_HOOKS = textwrap.dedent("""
    import json, sys
    import fedmsg.encoding
    from fastfedmsg import _core

    class Clears:
        # __json__ empties the container that holds it, mid-walk
        def __init__(self, parent):
            self.parent = parent
        def __json__(self):
            self.parent.clear()
            return "m"

    class Pops:
        def __init__(self, parent, key):
            self.parent, self.key = parent, key
        def __json__(self):
            self.parent.pop(self.key, None)
            return "popped"

    class Replaces:
        def __init__(self, parent, key):
            self.parent, self.key = parent, key
        def __json__(self):
            self.parent[self.key] = "replaced"
            return "replacer"

    def case(name):
        if name == "clears-dict":
            body = {"a": 1, "z": 2}
            body["m"] = Clears(body)
            body["y"] = [1, 2, 3]
        elif name == "clears-list":
            body = [1]
            body.append(Clears(body))
            body.extend([2, 3])
            body = {"list": body}
        elif name == "pops-later-key":
            body = {"a": 1}
            body["m"] = Pops(body, "y")
            body["y"] = [1, 2, 3]
        else:
            body = {"a": 1}
            body["m"] = Replaces(body, "y")
            body["y"] = "original"
        return body

    name = sys.argv[1]
    reference = json.loads(fedmsg.encoding.dumps(case(name)))
    ours = json.loads(_core.encode_json(case(name)))
    print(json.dumps(ours == reference), json.dumps(ours, sort_keys=True),
          json.dumps(reference, sort_keys=True))
""")


@pytest.mark.parametrize("name", ["clears-dict", "clears-list", "pops-later-key",
                                  "replaces-later-value"])
def test_a_hook_that_changes_the_body_being_walked(name):
    # A __json__ that empties, shrinks or rewrites the container it is in
    # once made publish crash (orjson held borrowed items across the hook).
    # It runs in a child, so that such a crash fails this test, not the run.
    result = subprocess.run([sys.executable, "-c", MUTATING_HOOKS, name], capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    same, ours, reference = result.stdout.split(" ", 2)
    assert same == "true", (ours, reference)


def test_a_json_hook_is_called_once_even_when_fedmsgs_encoder_takes_over():
    calls = []

    class Hooked:
        def __json__(self):
            calls.append(1)
            return {"value": float("nan")}    # only fedmsg's encoder writes NaN

    body = {"hooked": Hooked(), "plain": [1, "two"]}
    encoded = encode(body)

    assert calls == [1]
    assert json.dumps(json.loads(encoded), sort_keys=True) == json.dumps(
        json.loads(fedmsg_bytes({"hooked": {"value": float("nan")}, "plain": [1, "two"]})),
        sort_keys=True)


def same_as_fedmsg(make_body):
    """Encode a fresh body from ``make_body()`` with each; both decoded."""
    ours = json.loads(encode(make_body()))
    reference = json.loads(fedmsg_bytes(make_body()))
    return json.dumps(ours, sort_keys=True), json.dumps(reference, sort_keys=True)


def test_hooks_run_once_each_in_fedmsgs_order():
    # fedmsg's encoder sorts a dict's items before it walks them, so hooks
    # run in key order, and what one changes is seen by those after it.
    calls = []

    class Counter:
        def __json__(self):
            calls.append(1)
            return len(calls)

    def counters():
        calls.clear()
        return {"b": Counter(), "a": Counter(), "nested": {"d": Counter(), "c": [Counter()]}}

    ours, reference = same_as_fedmsg(counters)
    assert ours == reference
    encode(counters())
    assert len(calls) == 4

    def appender():
        shared = ["orig"]

        class Appends:
            def __json__(self):
                shared.append("late")
                return "hook"

        return {"b": Appends(), "a": shared, "mid": {"inner": Appends()}, "zz": shared}

    ours, reference = same_as_fedmsg(appender)
    assert ours == reference


@pytest.mark.parametrize("companion", [
    {1: "int keys"}, [{2.5: "float key", 7: "int key"}, {None: "none"}, {False: "bool"}],
    "deep",
], ids=["int-keys", "other-keys", "deep"])
def test_a_hook_runs_once_beside_what_only_fedmsgs_encoder_writes(companion):
    calls = []

    class Hooked:
        def __json__(self):
            calls.append(1)
            return len(calls)

    if companion == "deep":
        companion = nested(260)

    def body():
        calls.clear()
        return {"a": Hooked(), "k": companion}

    ours, reference = same_as_fedmsg(body)
    assert ours == reference
    encode(body())
    assert len(calls) == 1


def test_a_hook_that_raises_is_not_retried():
    calls = []

    class Flaky:
        def __json__(self):
            calls.append(1)
            if len(calls) == 1:
                raise TypeError("not ready")
            return "second try"

    with pytest.raises(TypeError, match="not ready") as caught:
        encode({"x": Flaky()})
    assert isinstance(caught.value, errors.EncodeError) and calls == [1]


def test_list_and_tuple_subclasses_are_read_through_their_iterator():
    class Lazy(list):
        def __iter__(self):
            return iter(["from __iter__"])

    class LazyTuple(tuple):
        def __iter__(self):
            return iter(("from tuple __iter__",))

    ours, reference = same_as_fedmsg(lambda: {"x": Lazy([1, 2, 3]), "y": LazyTuple((4, 5))})
    assert ours == reference
    assert json.loads(encode({"x": Lazy([1, 2, 3])})) == {"x": ["from __iter__"]}


def test_nesting_past_the_recursion_limit_is_a_recursion_error_as_with_fedmsg():
    deep = nested(sys.getrecursionlimit() + 100)
    with pytest.raises(RecursionError):
        fedmsg_bytes(deep)
    with pytest.raises(RecursionError) as caught:
        encode(deep)
    assert isinstance(caught.value, errors.NestingTooDeepError)
    assert isinstance(caught.value, errors.InvalidMessageError)

    circular = [1]
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        encode({"c": circular})


def test_a_bad_key_is_refused_before_its_value_is_walked():
    calls = []

    class Hooked:
        def __json__(self):
            calls.append(1)
            return "walked"

    with pytest.raises(TypeError):
        fedmsg_bytes({(1,): Hooked()})
    assert calls == []
    with pytest.raises(TypeError, match="keys must be"):
        encode({(1,): Hooked()})
    assert calls == []


def test_subclasses_are_read_as_fedmsgs_encoder_reads_them():
    class NoLength(list):
        def __len__(self):
            raise ValueError("__len__ must not be called")

    class Listed(dict):
        def items(self):
            return [["x", 1]]              # lists, not 2-tuples

    class Bare(dict):
        def items(self):
            return [42]

    class Pair(tuple):
        def __iter__(self):
            return iter(("IT", "ER"))

    class PairItems(dict):
        def items(self):
            return [Pair(("k", "v"))]

    ours, reference = same_as_fedmsg(lambda: {"a": NoLength([1, 2])})
    assert ours == reference
    for make in (lambda: Listed(x=1), lambda: Bare(x=1)):
        with pytest.raises(ValueError):
            fedmsg_bytes(make())
        with pytest.raises(ValueError, match="2-tuples"):
            encode(make())
    ours, reference = same_as_fedmsg(lambda: PairItems(k=0))
    assert ours == reference == '{"k": "v"}'

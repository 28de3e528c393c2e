"""Generated bodies: fastfedmsg sends what fedmsg 1.1.7 sends, or both refuse.

Hypothesis builds nested message bodies from the values where a JSON encoder
has choices to make: non-ASCII text and lone surrogates, integers beyond 64
bits, NaN and infinities, integer keys next to text keys, sets and
frozensets, datetimes and dates.  Each body is published by fastfedmsg and
by the real fedmsg (tests/oracle.py, through test_compat_oracle.Pair), each
on its own socket with its own subscriber; the decoded envelopes must be
equal apart from msg_id, timestamp and i, or both libraries must refuse the
body with the same builtin exception and send nothing.

The run is derandomized (the same 200 examples every time, so a failure is
reproducible as printed) and keeps no example database.
"""

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_compat_oracle import Pair

pytestmark = pytest.mark.integration

EXAMPLES = 200

text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=6),
    st.sampled_from(["\ud800", "a\udfffb", "\u2028", "\x00", "caf\u00e9", "\U0001F600"]),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2 ** 100), max_value=2 ** 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-5, max_value=1e-5),
)
times = st.one_of(
    st.datetimes(min_value=datetime.datetime(1901, 1, 1),
                 max_value=datetime.datetime(2200, 1, 1)),
    st.dates(min_value=datetime.date(1901, 1, 1), max_value=datetime.date(2200, 1, 1)),
)
hashable_leaves = st.one_of(text, st.integers(), st.booleans(), st.none())
leaves = st.one_of(
    text, numbers, st.booleans(), st.none(), times,
    st.sets(hashable_leaves, max_size=4),
    st.frozensets(st.integers(), max_size=3),
)
keys = st.one_of(text, text, st.integers(min_value=-5, max_value=20))
bodies = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)
messages = st.one_of(st.dictionaries(keys, bodies, max_size=5), bodies)


def test_generated_bodies_match_fedmsg(config_dir, tmp_path):
    pair = Pair(tmp_path)
    outcomes = {"sent": 0, "refused": 0}
    try:
        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(msg=messages)
        def check(msg):
            fast = pair.compare("generated", msg, "property")
            outcomes["refused" if fast.error is not None else "sent"] += 1

        check()
    finally:
        pair.close()

    # Both kinds of outcome must have been exercised for the test to mean much.
    assert outcomes["sent"] > EXAMPLES // 4 and outcomes["refused"] > 0, outcomes

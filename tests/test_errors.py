"""Every misconfiguration and bad input fails with the builtin fedmsg raises and a
message that says what is wrong and what to do.

Each case is created for real (a port bound by another socket, a config file
with a syntax error, ...).  Where fedmsg 1.1.7 fails on the same setup, it is
run too (oracle.py) and must raise the same builtin type.
"""

import json
import socket
import threading

import fedmsg
import fedmsg.config
import pytest

import fastfedmsg
import oracle
from conftest import free_port, write_config
from fastfedmsg import errors

pytestmark = pytest.mark.integration

ADDRESS_IN_USE = "Address already in use"


@pytest.fixture
def busy_ports():
    """Two ports held by listening sockets on every interface."""
    holders, ports = [], []
    for _ in range(2):
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        holders.append(holder)
        ports.append(holder.getsockname()[1])
    yield ports
    for holder in holders:
        holder.close()


@pytest.fixture(autouse=True)
def no_fedmsg_context():
    yield
    oracle.close_fedmsg()


def endpoints_for(name, *ports):
    return {name: ["tcp://127.0.0.1:%d" % port for port in ports]}


# -- sockets --------------------------------------------------------------------

def test_no_endpoint_can_be_bound(config_dir, tmp_path, busy_ports):
    endpoints = endpoints_for("svc.host", *busy_ports)

    with pytest.raises(OSError) as caught:
        fastfedmsg.init(name="svc.host", endpoints=endpoints, post_init_sleep=0)

    error = caught.value
    assert isinstance(error, IOError) and isinstance(error, errors.BindError)
    text = str(error)
    assert "'svc.host'" in text
    for port in busy_ports:
        assert "tcp://*:%d (%s)" % (port, ADDRESS_IN_USE) in text
    assert "active=True" in text
    assert [address for address, _why in error.attempts] == [
        "tcp://*:%d" % port for port in busy_ports]
    assert fastfedmsg.current_context() is None

    reference = oracle.fedmsg_init_error(tmp_path, {"endpoints": endpoints}, name="svc.host")
    assert reference is not None and issubclass(reference[0], IOError)


def test_the_first_bindable_endpoint_wins(config_dir, busy_ports, subscriber_factory):
    free = free_port()
    endpoints = endpoints_for("svc.host", busy_ports[0], free, busy_ports[1])

    context = fastfedmsg.init(name="svc.host", endpoints=endpoints, post_init_sleep=0,
                              zmq_linger=0)

    assert context.endpoint == "tcp://*:%d" % free
    sub = subscriber_factory("tcp://127.0.0.1:%d" % free)
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", modname="t"))
    fastfedmsg.publish(topic="bound", msg={"ok": 1}, modname="t")
    assert sub.recv_json()[1]["msg"] == {"ok": 1}


def test_no_endpoint_listed_for_the_name(config_dir, tmp_path):
    endpoints = endpoints_for("someone.else", free_port())

    fastfedmsg.init(name="svc.host", endpoints=endpoints, post_init_sleep=0)
    with pytest.raises(AttributeError) as caught:
        fastfedmsg.publish(topic="x", msg={}, modname="t")

    assert isinstance(caught.value, errors.NoEndpointError)
    text = str(caught.value)
    assert "'svc.host'" in text
    assert "endpoints" in text and "active=True" in text
    with pytest.raises(AttributeError):
        fastfedmsg.publish_many([("x", {})], modname="t")

    reference = oracle.fedmsg_publish_error(tmp_path, {"endpoints": endpoints},
                                            name="svc.host")
    assert reference is not None and issubclass(reference[0], AttributeError)


def test_zmq_disabled_without_another_transport(config_dir, tmp_path):
    endpoints = endpoints_for("svc.host", free_port())

    fastfedmsg.init(name="svc.host", endpoints=endpoints, zmq_enabled=False,
                    post_init_sleep=0)
    with pytest.raises(AttributeError) as caught:
        fastfedmsg.publish(topic="x", msg={}, modname="t")

    assert isinstance(caught.value, errors.NoTransportError)
    text = str(caught.value)
    assert "zmq_enabled" in text and "stomp_uri" in text

    reference = oracle.fedmsg_publish_error(
        tmp_path, {"endpoints": endpoints, "zmq_enabled": False}, name="svc.host")
    assert reference is not None and issubclass(reference[0], AttributeError)


def test_second_init_in_a_thread(endpoint_config, tmp_path):
    fastfedmsg.init(name=endpoint_config["name"])

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(name=endpoint_config["name"])

    assert isinstance(caught.value, errors.AlreadyInitializedError)
    assert "already initialized" in str(caught.value)
    assert "destroy()" in str(caught.value)

    reference = oracle.FedmsgPublisher(tmp_path, "oracle.host", free_port())
    try:
        with pytest.raises(ValueError):
            fedmsg.init()
    finally:
        reference.close()


def test_init_in_another_thread_is_independent(endpoint_config):
    fastfedmsg.init(name=endpoint_config["name"])
    results = []

    def other_thread():
        try:
            fastfedmsg.init(name="other.host", endpoints=endpoints_for("other.host",
                                                                     free_port()))
            results.append(fastfedmsg.current_context().name)
        except Exception as exc:  # reported through results
            results.append(exc)
        finally:
            fastfedmsg.destroy()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert results == ["other.host"]
    assert fastfedmsg.current_context().name == endpoint_config["name"]


def test_active_without_relay_inbound(config_dir, tmp_path):
    endpoints = endpoints_for("svc.host", free_port())

    with pytest.raises(KeyError) as caught:
        fastfedmsg.init(active=True, relay_inbound=None, endpoints=endpoints,
                        post_init_sleep=0)

    assert isinstance(caught.value, errors.NoRelayError)
    text = str(caught.value)
    assert "relay_inbound" in text and "active=True" in text
    assert fastfedmsg.current_context() is None

    # fedmsg's legacy loader has no relay_inbound default at all.
    reference = oracle.fedmsg_init_error(tmp_path, {"endpoints": endpoints}, active=True)
    assert reference is not None and issubclass(reference[0], KeyError)


# -- configuration --------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("high_water_mark", "lots", "a whole number >= 0"),
    ("io_threads", -1, "a whole number >= 0"),
    ("zmq_linger", 1.5, "a whole number >= -1"),
    ("active", "maybe", "True or False"),
    ("post_init_sleep", "0.5", "a number of seconds >= 0"),
    ("topic_prefix", 7, "a string"),
    ("endpoints", ["tcp://127.0.0.1:1"], "a dict mapping each name"),
    ("certnames", "x", "a dict"),
])
def test_bad_config_value_in_a_file(config_dir, key, value, expected):
    config = {"endpoints": {"svc.host": ["tcp://127.0.0.1:1"]}, key: value}
    path = write_config(config_dir, **config)

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(name="svc.host")

    error = caught.value
    assert isinstance(error, errors.ConfigError)
    text = str(error)
    assert repr(key) in text
    assert str(path) in text
    assert expected in text
    assert type(value).__name__ in text and repr(value) in text
    assert error.key == key and error.source == str(path)


def test_bad_config_value_from_a_keyword(config_dir):
    write_config(config_dir, endpoints={"svc.host": ["tcp://127.0.0.1:1"]})

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(name="svc.host", high_water_mark=[1], post_init_sleep=0)

    text = str(caught.value)
    assert "'high_water_mark'" in text and "init() keyword arguments" in text
    assert "a whole number >= 0" in text and "list [1]" in text


def test_endpoint_list_of_the_wrong_type_names_the_name(config_dir):
    path = write_config(config_dir, endpoints={"svc.host": [3000]})

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(name="svc.host", post_init_sleep=0)

    text = str(caught.value)
    assert "'endpoints'" in text and "'svc.host'" in text and str(path) in text


def test_config_file_with_a_syntax_error(config_dir):
    path = config_dir / "broken.py"
    path.write_text("config = {\n    'endpoints': {},\n    oops oops\n}\n")

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(post_init_sleep=0)

    text = str(caught.value)
    assert str(path) in text and "line 3" in text and "syntax" in text


def test_config_file_that_raises(config_dir):
    path = config_dir / "raises.py"
    path.write_text("import os\n\nconfig = {'endpoints': {}, 'x': 1 / 0}\n")

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(post_init_sleep=0)

    text = str(caught.value)
    assert str(path) in text and "line 3" in text and "ZeroDivisionError" in text


def test_config_file_without_a_config_dict(config_dir):
    path = config_dir / "empty.py"
    path.write_text("settings = {}\n")

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(post_init_sleep=0)

    assert str(path) in str(caught.value) and "'config'" in str(caught.value)


def test_missing_endpoints_names_the_files_read(config_dir, tmp_path):
    first = config_dir / "10-first.py"
    first.write_text("config = {'topic_prefix': 'org.example'}\n")
    second = config_dir / "20-second.py"
    second.write_text("config = {'environment': 'stg'}\n")

    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(post_init_sleep=0)

    text = str(caught.value)
    assert "'endpoints'" in text
    assert str(first) in text and str(second) in text
    assert text.index(str(first)) < text.index(str(second))

    # fedmsg fails on the same files with a ValueError too.
    with pytest.raises(ValueError):
        fedmsg.config.load_config(filenames=[str(first), str(second)],
                                         invalidate_cache=True)


def test_missing_endpoints_with_no_file_at_all(config_dir):
    with pytest.raises(ValueError) as caught:
        fastfedmsg.init(post_init_sleep=0)

    text = str(caught.value)
    assert "no config file" in text and "FEDMSG_CONFIG" in text


# -- messages -------------------------------------------------------------------

@pytest.fixture
def connected(endpoint_config, subscriber_factory):
    """A fastfedmsg context with a connected subscriber."""
    fastfedmsg.init(name=endpoint_config["name"])
    sub = subscriber_factory(endpoint_config["endpoint"])
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))
    return sub


def assert_only_the_next_good_message_arrives(sub):
    fastfedmsg.publish(topic="good", msg={"after": "refusal"}, modname="t")
    topic, envelope = sub.recv_json()
    assert topic == b"org.fedoraproject.dev.t.good"
    assert envelope["msg"] == {"after": "refusal"}
    assert sub.drain() == []


@pytest.mark.parametrize("body, type_name", [
    ({"raw": b"bytes"}, "bytes"),
    ({"when": object()}, "object"),
    ({"nested": [{"deeper": {1j}}]}, "complex"),
    ({1: "a", "b": 2}, "'<' not supported"),
])
def test_unencodable_body(connected, body, type_name):
    counted = fastfedmsg.current_context().publisher.i

    with pytest.raises(TypeError) as caught:
        fastfedmsg.publish(topic="bad", msg=body, modname="t")

    assert isinstance(caught.value, errors.EncodeError)
    assert type_name in str(caught.value)
    assert "JSON" in str(caught.value)
    assert fastfedmsg.current_context().publisher.i == counted
    assert_only_the_next_good_message_arrives(connected)


def test_circular_body(connected):
    body = {}
    body["self"] = body

    with pytest.raises(ValueError) as caught:
        fastfedmsg.publish(topic="bad", msg=body, modname="t")

    assert "ircular" in str(caught.value)
    assert_only_the_next_good_message_arrives(connected)


def test_unencodable_body_with_a_hook(connected):
    seen = []

    with pytest.raises(TypeError):
        fastfedmsg.publish(topic="bad", msg={"raw": b"x"}, modname="t",
                           pre_fire_hook=seen.append)

    assert len(seen) == 1
    assert_only_the_next_good_message_arrives(connected)


@pytest.mark.parametrize("topic, modname, says", [
    (b"caf\xe9", "t", "not valid UTF-8"),
    ("with\x00nul", "t", "NUL"),
    ("fine", "mod\x00name", "NUL"),
    (b"nul\x00in.bytes", "t", "NUL"),
    ("fine", b"\xff\xfe", "not valid UTF-8"),
    ("lone\ud800surrogate", "t", "UTF-8"),
])
def test_unusable_topic(connected, topic, modname, says):
    with pytest.raises(ValueError) as caught:
        fastfedmsg.publish(topic=topic, msg={}, modname=modname)

    assert isinstance(caught.value, errors.InvalidTopicError)
    assert says in str(caught.value)
    assert_only_the_next_good_message_arrives(connected)


def test_topic_of_the_wrong_type(connected):
    with pytest.raises(TypeError) as caught:
        fastfedmsg.publish(topic=12, msg={}, modname="t")

    assert isinstance(caught.value, ValueError)
    assert "topic must be a str" in str(caught.value) and "int 12" in str(caught.value)
    assert_only_the_next_good_message_arrives(connected)


def test_utf8_bytes_topic_is_text(connected):
    fastfedmsg.publish(topic="caf\u00e9".encode("utf-8"), msg={}, modname="t")

    topic, envelope = connected.recv_json()
    assert topic == "org.fedoraproject.dev.t.caf\u00e9".encode("utf-8")
    assert envelope["topic"] == "org.fedoraproject.dev.t.caf\u00e9"


def test_bad_item_in_publish_many(connected):
    with pytest.raises(TypeError) as caught:
        fastfedmsg.publish_many([("one", {"n": 1}), ("two", {"n": b"x"}), ("three", {})],
                                modname="t")

    assert caught.value.index == 1 and "item 1" in str(caught.value)
    assert isinstance(caught.value.error, errors.EncodeError)
    topic, envelope = connected.recv_json()
    assert topic.endswith(b".one") and envelope["msg"] == {"n": 1}
    assert_only_the_next_good_message_arrives(connected)


@pytest.mark.parametrize("bad_at", [0, 63, 64, 150])
def test_bad_item_deep_in_publish_many(connected, bad_at):
    # Items are built in chunks before they are sent: whichever chunk the bad
    # item falls in, every item before it arrives, in order, and none after.
    items = [("n", {"n": n}) for n in range(200)]
    items[bad_at] = ("bad", {"n": object()})
    fastfedmsg.publish(topic="marker", msg={}, modname="t")
    _topic, marker = connected.recv_json()
    with pytest.raises(TypeError) as caught:
        fastfedmsg.publish_many(items, modname="t")

    assert caught.value.index == bad_at
    for n in range(bad_at):
        _topic, envelope = connected.recv_json()
        assert envelope["msg"] == {"n": n} and envelope["i"] == marker["i"] + 1 + n
    # The bad item and those after it used no i.
    fastfedmsg.publish(topic="good", msg={}, modname="t")
    topic, envelope = connected.recv_json()
    assert topic.endswith(b".good") and envelope["i"] == marker["i"] + 1 + bad_at
    assert connected.drain() == []


def test_publish_many_reads_dict_items_of_every_make(connected):
    # Dict items are read by comparing their keys with the interned names
    # where CPython's layout allows, else with dict.get: both must agree.
    loaded = json.loads('{"topic": "loaded", "msg": {"n": 3}, "modname": "json"}')
    items = [
        {"topic": "literal", "msg": {"n": 1}, "modname": "lit"},
        dict(topic="keywords", msg={"n": 2}),
        loaded,                                              # keys not interned
        {"msg": {"n": 4}, "topic": "reordered", "modname": ""},   # "" means the default
        {"topic": "extra", "msg": {"n": 5}, "modname": "x", "ignored": True},
        {"topic": "no-body"},
        {"modname": None, "topic": "none-modname", "msg": {"n": 7}},
    ]
    assert fastfedmsg.publish_many(items, modname="default") == len(items)

    expected = [("lit.literal", {"n": 1}), ("default.keywords", {"n": 2}),
                ("json.loaded", {"n": 3}), ("default.reordered", {"n": 4}),
                ("x.extra", {"n": 5}), ("default.no-body", {}),
                ("default.none-modname", {"n": 7})]
    for suffix, body in expected:
        topic, envelope = connected.recv_json()
        assert topic == ("org.fedoraproject.dev." + suffix).encode()
        assert envelope["topic"] == topic.decode() and envelope["msg"] == body
    assert connected.drain() == []


def test_publish_many_passes_on_what_its_iterator_raises(connected):
    def items():
        yield ("first", {"n": 1})
        raise ValueError("the producer's own error")

    with pytest.raises(ValueError, match="the producer's own error") as caught:
        fastfedmsg.publish_many(items(), modname="t")

    assert not isinstance(caught.value, errors.PublishManyError)
    topic, envelope = connected.recv_json()
    assert topic.endswith(b".first") and envelope["msg"] == {"n": 1}
    assert connected.drain() == []


def test_a_hook_that_publishes_gets_the_next_i_and_goes_out_first(connected):
    # A __json__ that itself publishes: its message is sent while the outer
    # one is being built, so it takes the next i and the outer one the one
    # after, in the order they reach the wire, with publish and publish_many.
    class Audited:
        def __json__(self):
            fastfedmsg.publish(topic="audit", msg={"note": "inner"}, modname="t")
            return "outer-value"

    fastfedmsg.publish(topic="before", msg={}, modname="t")
    fastfedmsg.publish(topic="outer", msg={"x": Audited()}, modname="t")
    fastfedmsg.publish_many([("many", {"n": n}) for n in range(5)]
                            + [("many-hooked", {"x": Audited()})]
                            + [("many", {"n": n}) for n in range(5, 8)], modname="t")
    fastfedmsg.publish(topic="after", msg={}, modname="t")

    arrived = [connected.recv_json() for _ in range(14)]
    topics = [topic.decode().rsplit(".", 1)[1] for topic, _envelope in arrived]
    numbers = [envelope["i"] for _topic, envelope in arrived]
    assert topics == (["before", "audit", "outer"] + ["many"] * 5
                      + ["audit", "many-hooked"] + ["many"] * 3 + ["after"])
    assert numbers == list(range(numbers[0], numbers[0] + 14))
    assert connected.drain() == []


def test_a_body_hook_that_publishes_under_a_pre_fire_hook(connected):
    class Audited:
        def __json__(self):
            fastfedmsg.publish(topic="audit", msg={}, modname="t")
            return "outer-value"

    fastfedmsg.publish(topic="outer", msg={"x": Audited()}, modname="t",
                       pre_fire_hook=lambda envelope: None)
    fastfedmsg.publish(topic="after", msg={}, modname="t")

    arrived = [connected.recv_json() for _ in range(3)]
    numbers = [envelope["i"] for _topic, envelope in arrived]
    assert len(set(numbers)) == 3 and numbers[2] == max(numbers)
    assert connected.drain() == []


def test_publish_many_over_a_generator_that_publishes_keeps_the_order(connected):
    def items():
        yield ("p1", {})
        fastfedmsg.publish(topic="side", msg={}, modname="t")
        yield ("p2", {})

    fastfedmsg.publish_many(items(), modname="t")

    arrived = [connected.recv_json() for _ in range(3)]
    assert [topic.rsplit(b".", 1)[1] for topic, _envelope in arrived] == [b"p1", b"side", b"p2"]
    numbers = [envelope["i"] for _topic, envelope in arrived]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_a_hook_that_destroys_the_context_gets_a_clear_error(connected):
    class Destroys:
        def __json__(self):
            fastfedmsg.destroy()
            return "gone"

    with pytest.raises(errors.ClosedError):
        fastfedmsg.publish(topic="doomed", msg={"x": Destroys()}, modname="t")
    assert connected.drain() == []


def test_errors_share_one_base():
    for name in ("ConfigError", "BindError", "NoEndpointError", "NoTransportError",
                 "NoRelayError", "EncodeError", "InvalidMessageError",
                 "InvalidTopicError", "TopicTypeError", "AlreadyInitializedError",
                 "PublishManyError", "ClosedError"):
        assert issubclass(getattr(errors, name), errors.FastFedmsgError), name
    assert json.dumps(str(errors.NoRelayError("set 'relay_inbound'"))) == \
        '"set \'relay_inbound\'"'

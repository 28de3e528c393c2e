"""Configuration: the files fedmsg reads, in its order, merged by its rules; and the
socket options the config asks for really set on the socket.

The search-path tests lay out a home folder, a working folder and a virtual
environment under tmp_path, each with fedmsg.d/ and fedmsg-config.py files,
and load them with both fastfedmsg.config.load_config() and fedmsg's legacy
loader (what fedmsg.init() uses).  Every file appends its tag to the
environment variable CONFIG_READ_ORDER when it runs, so the order in which
each loader executed the files is compared, not only the result.
"""

import os

import fedmsg
import fedmsg.config
import pytest
import zmq

import fastfedmsg
import oracle
from conftest import free_port, write_config
from fastfedmsg import config as ffconfig

pytestmark = pytest.mark.integration

ORDER = "CONFIG_READ_ORDER"


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """Folders for the legacy search path, with nothing else able to leak in."""
    home, cwd, venv = tmp_path / "home", tmp_path / "cwd", tmp_path / "venv"
    for folder in (home / ".fedmsg.d", cwd / "fedmsg.d", venv / "etc" / "fedmsg.d"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    monkeypatch.delenv("FEDMSG_CONFIG", raising=False)
    monkeypatch.setenv(ORDER, "")
    monkeypatch.chdir(cwd)
    return {"home": home, "cwd": cwd, "venv": venv,
            "home.d": home / ".fedmsg.d", "cwd.d": cwd / "fedmsg.d",
            "venv.d": venv / "etc" / "fedmsg.d"}


def config_file(path, tag, config):
    """A fedmsg config file that records its tag in CONFIG_READ_ORDER when it runs."""
    path.write_text(
        "import os\n"
        "os.environ[%r] = os.environ.get(%r, '') + %r + ','\n"
        "config = %r\n" % (ORDER, ORDER, tag, config))
    return path


def read_order():
    order = os.environ[ORDER].rstrip(",")
    os.environ[ORDER] = ""
    return order.split(",") if order else []


def load_both():
    """(fastfedmsg's config, its read order, fedmsg's config, its read order)."""
    fast = ffconfig.load_config()
    fast_order = read_order()
    reference = fedmsg.config.load_config(invalidate_cache=True)
    reference_order = read_order()
    vars(fedmsg.config)["__cache"] = {}
    return fast, fast_order, reference, reference_order


def assert_same_values(fast, reference, keys):
    for key in keys:
        assert fast[key] == reference[key], key


@pytest.fixture(autouse=True)
def forget_fedmsg_cache():
    yield
    vars(fedmsg.config)["__cache"] = {}
    oracle.close_fedmsg()


def test_search_path_order_matches_fedmsg(layout):
    ep = {"relay_outbound": ["tcp://127.0.0.1:4001"]}
    config_file(layout["home.d"] / "b.py", "home.d/b", {"endpoints": ep})
    config_file(layout["home.d"] / "a.py", "home.d/a", {})
    config_file(layout["cwd.d"] / "2-two.py", "cwd.d/2", {})
    config_file(layout["cwd.d"] / "10-ten.py", "cwd.d/10", {})
    config_file(layout["cwd.d"] / ".hidden.py", "cwd.d/.hidden", {})
    (layout["cwd.d"] / "notes.txt").write_text("config = {'ignored': True}\n")
    (layout["cwd.d"] / "folder.py").mkdir()
    config_file(layout["venv.d"] / "v.py", "venv.d/v", {})
    config_file(layout["home"] / ".fedmsg-config.py", "home/single", {})
    config_file(layout["cwd"] / "fedmsg-config.py", "cwd/single", {})

    fast, fast_order, reference, reference_order = load_both()

    assert fast_order == reference_order == [
        "home.d/a", "home.d/b", "cwd.d/.hidden", "cwd.d/10", "cwd.d/2", "venv.d/v",
        "home/single", "cwd/single"]
    assert "ignored" not in fast and "ignored" not in reference
    assert len(fast.files) == 8


def test_merge_rules_match_fedmsg(layout):
    config_file(layout["home.d"] / "base.py", "base", {
        "endpoints": {"svc.a": "tcp://127.0.0.1:3001", "svc.b": ["tcp://127.0.0.1:3002"]},
        "topic_prefix": "org.home",
        "environment": "stg",
        "nested": {"x": {"y": 1, "z": 2}, "keep": True},
        "becomes_scalar": {"a": 1},
        "becomes_dict": 5,
        "a_list": [1, 2],
        "zmq_linger": 5,
    })
    config_file(layout["cwd.d"] / "override.py", "override", {
        "endpoints": {"svc.b": ["tcp://127.0.0.1:4002"], "svc.c": ["tcp://127.0.0.1:3003"]},
        "nested": {"x": {"y": 10}},
        "becomes_scalar": 7,
        "becomes_dict": {"b": 2},
        "a_list": [3],
    })
    config_file(layout["cwd"] / "fedmsg-config.py", "single", {
        "topic_prefix": "org.cwd",
        "nested": {"new": "n"},
    })

    fast, fast_order, reference, reference_order = load_both()

    assert fast_order == reference_order == ["base", "override", "single"]
    assert_same_values(fast, reference, [
        "endpoints", "topic_prefix", "environment", "nested", "becomes_scalar",
        "becomes_dict", "a_list", "zmq_linger"])
    assert fast["endpoints"] == {"svc.a": ["tcp://127.0.0.1:3001"],
                                 "svc.b": ["tcp://127.0.0.1:4002"],
                                 "svc.c": ["tcp://127.0.0.1:3003"]}
    assert fast["nested"] == {"x": {"y": 10, "z": 2}, "keep": True, "new": "n"}
    assert fast["topic_prefix"] == "org.cwd"
    assert fast.source_of("topic_prefix") == str(layout["cwd"] / "fedmsg-config.py")
    assert fast.source_of("io_threads") == ffconfig.DEFAULT_SOURCE


def test_a_file_value_replaces_a_default_dict_whole(layout):
    config_file(layout["cwd"] / "fedmsg-config.py", "single", {
        "endpoints": {}, "certnames": {"only": "this"}})

    fast, _order, _reference, _reference_order = load_both()

    assert fast["certnames"] == {"only": "this"}


def test_keywords_win_over_files_as_in_fedmsg_init(layout, tmp_path):
    fast_port, fedmsg_port = free_port(), free_port()
    config_file(layout["cwd"] / "fedmsg-config.py", "single", {
        "endpoints": {"fast.host": ["tcp://127.0.0.1:%d" % fast_port],
                      "fedmsg.host": ["tcp://127.0.0.1:%d" % fedmsg_port],
                      "other": ["tcp://127.0.0.1:1"]},
        "topic_prefix": "org.file", "environment": "stg",
        "nested": {"a": 1, "b": 2},
    })
    overrides = {"topic_prefix": "org.keyword", "nested": {"a": 10},
                 "post_init_sleep": 0, "zmq_linger": 0}

    fast = fastfedmsg.init(name="fast.host", **overrides).config
    vars(fedmsg.config)["__cache"] = {}
    reference = fedmsg.init(name="fedmsg.host", **overrides).c

    assert_same_values(fast, reference, ["topic_prefix", "environment", "nested"])
    assert fast["topic_prefix"] == "org.keyword"
    assert fast["nested"] == {"a": 10}
    assert fast.source_of("topic_prefix") == ffconfig.KEYWORD_SOURCE


def test_fedmsg_config_names_a_file(layout, monkeypatch, tmp_path):
    chosen = config_file(tmp_path / "chosen.py", "chosen", {"endpoints": {}, "x": 1})
    config_file(layout["cwd"] / "fedmsg-config.py", "cwd", {"endpoints": {}, "x": 2})
    config_file(layout["home.d"] / "h.py", "home", {"y": 2})
    monkeypatch.setenv("FEDMSG_CONFIG", str(chosen))

    fast = ffconfig.load_config()

    assert read_order() == ["chosen"]
    assert fast.files == [str(chosen)] == fedmsg.config._get_config_files()
    assert fast["x"] == 1 and "y" not in fast


def test_fedmsg_config_names_a_folder(layout, monkeypatch, tmp_path):
    folder = tmp_path / "chosen.d"
    folder.mkdir()
    config_file(folder / "20-b.py", "b", {"endpoints": {"n": ["tcp://127.0.0.1:2"]},
                                         "x": {"k": 2}})
    config_file(folder / "10-a.py", "a", {"endpoints": {"m": ["tcp://127.0.0.1:1"]},
                                         "x": {"k": 1, "j": 1}})
    (folder / "README").write_text("not python")
    config_file(layout["cwd"] / "fedmsg-config.py", "cwd", {"endpoints": {}, "z": 1})
    monkeypatch.setenv("FEDMSG_CONFIG", str(folder))

    fast = ffconfig.load_config()

    assert read_order() == ["a", "b"]
    assert fast.files == sorted(fedmsg.config._get_config_files())
    assert fast["endpoints"] == {"m": ["tcp://127.0.0.1:1"], "n": ["tcp://127.0.0.1:2"]}
    assert fast["x"] == {"k": 2, "j": 1}
    assert "z" not in fast


def test_keywords_win_over_fedmsg_config(config_dir):
    write_config(config_dir, endpoints={"a": ["tcp://127.0.0.1:1"]}, environment="stg")

    config = ffconfig.load_config(environment="prod", endpoints={"b": "tcp://127.0.0.1:2"})

    assert config["environment"] == "prod"
    assert config["endpoints"] == {"b": ["tcp://127.0.0.1:2"]}


def test_changed_file_is_read_again_and_results_do_not_leak(config_dir):
    path = write_config(config_dir, endpoints={"a": ["tcp://127.0.0.1:1"]}, nested={"v": 1})

    first = ffconfig.load_config()
    first["nested"]["v"] = "changed by the caller"
    first["endpoints"]["a"].append("tcp://127.0.0.1:9")
    assert ffconfig.load_config()["nested"] == {"v": 1}
    assert ffconfig.load_config()["endpoints"] == {"a": ["tcp://127.0.0.1:1"]}

    path.write_text("config = %r\n" % {"endpoints": {}, "nested": {"v": 2, "w": 3}})
    os.utime(path, ns=(1, 1))
    assert ffconfig.load_config()["nested"] == {"v": 2, "w": 3}


# -- socket options ------------------------------------------------------------

SOCKET_OPTIONS = {
    "high_water_mark": 123,
    "zmq_linger": 77,
    "zmq_tcp_keepalive": 1,
    "zmq_tcp_keepalive_cnt": 4,
    "zmq_tcp_keepalive_idle": 30,
    "zmq_tcp_keepalive_intvl": 6,
    "zmq_reconnect_ivl": 250,
    "zmq_reconnect_ivl_max": 5000,
}

EXPECTED_SOCKET = {
    zmq.SNDHWM: 123, zmq.RCVHWM: 123, zmq.LINGER: 77,
    zmq.TCP_KEEPALIVE: 1, zmq.TCP_KEEPALIVE_CNT: 4, zmq.TCP_KEEPALIVE_IDLE: 30,
    zmq.TCP_KEEPALIVE_INTVL: 6, zmq.RECONNECT_IVL: 250, zmq.RECONNECT_IVL_MAX: 5000,
}


def read_back(sock, options):
    return {option: sock.getsockopt(option) for option in options}


def test_socket_options_from_a_config_file_reach_the_socket(config_dir, port, tmp_path):
    write_config(config_dir, endpoints={"svc.host": ["tcp://127.0.0.1:%d" % port]},
                 io_threads=2, post_init_sleep=0, **SOCKET_OPTIONS)

    fastfedmsg.init(name="svc.host")

    context = fastfedmsg.current_context()
    assert read_back(context.socket, EXPECTED_SOCKET) == EXPECTED_SOCKET
    assert context.zmq_context.get(zmq.IO_THREADS) == 2

    # fedmsg sets the same keepalive options.  It never sets the reconnect
    # ones on its publisher, nor LINGER on a bound socket, and a non-zero
    # high_water_mark makes its init fail on current pyzmq (zmq.HWM is EINVAL).
    fedmsg_options = dict(SOCKET_OPTIONS, high_water_mark=0)
    reference = oracle.FedmsgPublisher(tmp_path, "oracle.host", free_port(), io_threads=2,
                                       **fedmsg_options)
    try:
        shared = [zmq.TCP_KEEPALIVE, zmq.TCP_KEEPALIVE_CNT,
                  zmq.TCP_KEEPALIVE_IDLE, zmq.TCP_KEEPALIVE_INTVL]
        assert read_back(reference.context.publisher, shared) == \
            read_back(context.socket, shared)
        assert reference.context.context.get(zmq.IO_THREADS) == 2
    finally:
        reference.close()


def test_socket_options_from_keywords_on_a_connecting_socket(config_dir, port):
    write_config(config_dir, endpoints={})

    fastfedmsg.init(active=True, relay_inbound="tcp://127.0.0.1:%d" % port,
                    post_init_sleep=0, io_threads=3, **SOCKET_OPTIONS)

    context = fastfedmsg.current_context()
    assert context.name == "relay_inbound"
    assert read_back(context.socket, EXPECTED_SOCKET) == EXPECTED_SOCKET
    assert context.zmq_context.get(zmq.IO_THREADS) == 3
    assert context.socket.getsockopt(zmq.LAST_ENDPOINT) == \
        ("tcp://127.0.0.1:%d" % port).encode("ascii")


def test_default_socket_options(endpoint_config):
    fastfedmsg.init(name=endpoint_config["name"], zmq_linger=1000)

    sock = fastfedmsg.current_context().socket
    assert read_back(sock, [zmq.SNDHWM, zmq.RCVHWM, zmq.LINGER]) == {
        zmq.SNDHWM: 0, zmq.RCVHWM: 0, zmq.LINGER: 1000}
    assert sock.getsockopt(zmq.TCP_KEEPALIVE) == ffconfig.DEFAULTS["zmq_tcp_keepalive"]
    assert sock.getsockopt(zmq.RECONNECT_IVL_MAX) == ffconfig.DEFAULTS["zmq_reconnect_ivl_max"]


def test_relay_inbound_as_a_list_like_fedmsgs_own_relay_config(config_dir, tmp_path):
    """fedmsg's fedmsg.d/relay.py (and Fedora's configs) list relay_inbound; an
    active publisher connects to the first address, as fedmsg's does."""
    relays = ["tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()]
    config = {"endpoints": {"relay_outbound": ["tcp://127.0.0.1:%d" % free_port()]},
              "relay_inbound": relays}
    write_config(config_dir, **config)

    context = fastfedmsg.init(active=True, post_init_sleep=0, zmq_linger=0)
    reference_file = tmp_path / "fedmsg-relay.py"
    reference_file.write_text("config = %r\n" % config)
    fedmsg.config.load_config(filenames=[str(reference_file)], invalidate_cache=True)
    reference = fedmsg.init(active=True, post_init_sleep=0, zmq_linger=0)

    assert context.config["relay_inbound"] == relays
    assert context.endpoint == relays[0]
    assert context.socket.getsockopt(zmq.LAST_ENDPOINT) == \
        reference.publisher.getsockopt(zmq.LAST_ENDPOINT) == relays[0].encode("ascii")


@pytest.mark.parametrize("value", [[], [2001], 2001])
def test_relay_inbound_of_the_wrong_type(config_dir, value):
    path = write_config(config_dir, endpoints={}, relay_inbound=value)

    with pytest.raises(ValueError) as caught:
        ffconfig.load_config()

    text = str(caught.value)
    assert "'relay_inbound'" in text and str(path) in text and "a non-empty list" in text

"""Loading and checking fedmsg configuration.

fastfedmsg reads the files fedmsg reads, in the same order, with the same
merge rules: each file is Python that defines a dict named ``config``.

Where the files are looked for
------------------------------
If the environment variable ``FEDMSG_CONFIG`` is set, it names the one place
to read (a file, or a directory whose ``*.py`` files are read in name order),
as fedmsg's newer loader does; nothing else is read.  Otherwise, as
``fedmsg.init()`` does:

1. ``/etc/fedmsg.d/*.py``, ``~/.fedmsg.d/*.py``, ``./fedmsg.d/*.py`` and, in a
   virtual environment, ``$VIRTUAL_ENV/etc/fedmsg.d/*.py`` (each in name order);
2. then ``/etc/fedmsg-config.py``, ``~/.fedmsg-config.py``,
   ``./fedmsg-config.py``.

Nested dicts merge across files; any other value is replaced; later files win.
The merged files then replace the defaults below key by key, and init()'s
keyword arguments replace the result key by key.

Keys (defaults in DEFAULTS)
---------------------------
topic_prefix (str)          first part of every full topic
environment (str)           second part: dev, stg, prod
name (str or None)          whose endpoints to bind; guessed when missing
endpoints (dict)            name -> endpoint or list of endpoints
relay_inbound (str or list) where active publishers connect (the first that
                            connects wins; fastfedmsg-relay binds there)
active (bool)               connect to relay_inbound instead of binding
active_connect_timeout (s)  active mode: wait at most this long for the relay's
                            subscription (None: use post_init_sleep)
io_threads (int >= 0)       libzmq I/O threads of the context
post_init_sleep (s >= 0)    pause after init so subscribers can connect
wait_for_subscribers        (count, timeout_s): instead of post_init_sleep,
                            init returns once count subscriptions arrived, or
                            raises SubscriberTimeoutError (default None)
high_water_mark (int >= 0)  SNDHWM/RCVHWM in messages; 0 means no limit
on_full (str)               when a subscriber's queue is at the high-water
                            mark: 'fedmsg' (default) drops the message for
                            that subscriber only, uncounted, as fedmsg does;
                            'drop' refuses it for every subscriber and counts
                            it in stats(); 'block' waits up to send_timeout;
                            'raise' raises HighWaterMarkError
send_timeout (ms >= -1)     on_full='block': longest wait; -1 waits for ever
                            (default 1000)
max_message_size (bytes)    larger messages raise MessageTooLargeError and are
                            not sent; None (default) for no limit
zmq_linger (ms >= -1)       how long close waits for unsent messages
zmq_enabled (bool)          publish over ZeroMQ; False needs another transport
zmq_tcp_keepalive (-1..1), zmq_tcp_keepalive_cnt, _idle (s), _intvl (s)
zmq_reconnect_ivl (ms), zmq_reconnect_ivl_max (ms)
sign_messages (bool)        sign every envelope (needs the 'sign' extra)
crypto_backend (str)        'x509', the only backend fastfedmsg signs with
ssldir (str)                folder of CERTNAME.key and CERTNAME.crt
certnames (dict)            key -> CERTNAME; the key is cert_prefix + '.' +
                            short host name, else name (relay_inbound:
                            'shell.' + short host name)
cert_prefix (str)           see certnames
crypto_digest (str)         sha1 (default; what fedmsg's checkers accept),
                            sha256, sha384 or sha512
validate_signatures (bool)  subscribers check signatures (fastfedmsg.crypto)
crypto_validate_backends (list of str)  backends a checker accepts; x509
crypto_validate_digests (list of str)   digests a checker accepts; default
                            ['sha1', 'sha256']
ca_cert_location (str)      CA certificate, a path or https:// URL (fedmsg's
                            default: Fedora's CA over HTTPS)
crl_location (str or None)  CRL, a path or https:// URL; None checks no CRL
routing_policy (dict)       full topic -> list of certificate common names
routing_nitpicky (bool)     reject topics missing from routing_policy
stomp_uri, stomp_user, stomp_pass, stomp_ssl_crt, stomp_ssl_key,
stomp_heartbeat (ms)        the STOMP transport (zmq_enabled=False), with
                            fedmsg's names: 'host:port,host:port' tried in
                            order, login (default guest/guest), client
                            certificate for TLS, heart-beat interval (0: none)
stomp_ssl_ca (str)          CA file to check the broker's TLS certificate
                            (default: the system's CAs)
stomp_vhost (str)           CONNECT's host header, the broker's virtual host
                            (default '/', RabbitMQ's default vhost)
stomp_destination (str)     template of the SEND destination, with {topic}
                            for the full topic (default '{topic}', as Moksha;
                            RabbitMQ needs '/topic/{topic}' or
                            '/exchange/amq.topic/{topic}')
stomp_confirm (bool)        ask a receipt for every message and return from
                            publish once the broker confirmed (default False)
stomp_confirm_timeout (s)   longest wait for a confirmation (default 30)
stomp_connect_timeout (s)   longest wait for one broker to answer (default 10)
stomp_queue_limit (int)     messages kept while no broker takes them; past
                            it publish raises BrokerQueueFullError (default
                            10000)
mute (bool)                 build no socket: this program never publishes

Keys not listed pass through unchecked, as fedmsg lets them.
"""

import copy
import logging
import numbers
import os
import re
import traceback

from fastfedmsg.errors import ConfigError

log = logging.getLogger(__name__)

#: Where a default came from, for error messages.
DEFAULT_SOURCE = "fastfedmsg's defaults"
KEYWORD_SOURCE = "init() keyword arguments or the command line"

DEFAULTS = {
    "topic_prefix": "org.fedoraproject",
    "environment": "dev",
    "io_threads": 1,
    "post_init_sleep": 0.5,
    "timeout": 2,
    "print_config": False,
    "high_water_mark": 0,
    "on_full": "fedmsg",
    "send_timeout": 1000,
    "max_message_size": None,
    "wait_for_subscribers": None,
    "zmq_linger": 1000,
    "zmq_enabled": True,
    "zmq_tcp_keepalive": 1,
    "zmq_tcp_keepalive_cnt": 3,
    "zmq_tcp_keepalive_idle": 60,
    "zmq_tcp_keepalive_intvl": 5,
    "zmq_reconnect_ivl": 100,
    "zmq_reconnect_ivl_max": 1000,
    "active": False,
    "persistent_store": None,
    "relay_inbound": "tcp://127.0.0.1:2001",
    "sign_messages": False,
    "crypto_backend": "x509",
    "ssldir": "/etc/pki/fedmsg",
    "certnames": {},
}

#: Keys whose values are masked wherever the config is shown.
SECRET_KEYS = ("stomp_pass", "stomp_ssl_key", "stomp_ssl_crt", "ssldir",
               "ca_cert_location", "crl_location")


# -- validators: each returns the value (possibly normalised) or raises a
#    ValueError whose text says what was expected.

def _text(value):
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _optional_text(value):
    return value if value is None else _text(value)


def _flag(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("True or False")


def _int_at_least(low):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError("a whole number >= %d" % low)
        return int(value)
    return check


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError("a number of seconds >= 0")
    return value


def _positive_seconds(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError("a number of seconds > 0")
    return value


def _destination_template(value):
    if not isinstance(value, str) or not value:
        raise ValueError("a destination template such as '/topic/{topic}'")
    try:
        value.format(topic="org.fedoraproject.dev.example")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError("a destination template whose only field is {topic} (%s)"
                         % (exc,)) from None
    return value


def _endpoint_list(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("an endpoint string such as 'tcp://127.0.0.1:3000' or a list of them")


def _optional_endpoint_list(value):
    # fedmsg's own fedmsg.d/relay.py, and Fedora's configs, give relay_inbound
    # as a list; a string stays a string.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("an endpoint string such as 'tcp://127.0.0.1:2001', a non-empty list "
                     "of them, or None")


def _endpoints(value):
    if not isinstance(value, dict):
        raise ValueError("a dict mapping each name to an endpoint or a list of endpoints")
    checked = {}
    for name, endpoints in value.items():
        try:
            checked[name] = _endpoint_list(endpoints)
        except ValueError as exc:
            raise ValueError("for name %r, %s" % (name, exc)) from None
    return checked


def _mapping(value):
    if not isinstance(value, dict):
        raise ValueError("a dict")
    return value


DIGEST_NAMES = ("sha1", "sha256", "sha384", "sha512")


def _digest_name(value):
    if isinstance(value, str) and value.strip().lower() in DIGEST_NAMES:
        return value.strip().lower()
    raise ValueError("one of %s (fedmsg's checkers accept only sha1)" % ", ".join(DIGEST_NAMES))


def _digest_names(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("a non-empty list of digest names from %s" % ", ".join(DIGEST_NAMES))
    return [_digest_name(name) for name in value]


def _optional_text_list(value):
    if value is None:
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("a list of strings or None")


def _optional_mapping(value):
    return value if value is None else _mapping(value)


ON_FULL_MODES = ("fedmsg", "drop", "block", "raise")


def _on_full(value):
    if isinstance(value, str) and value.strip().lower() in ON_FULL_MODES:
        return value.strip().lower()
    raise ValueError("one of %s" % ", ".join(repr(mode) for mode in ON_FULL_MODES))


def _optional_size(value):
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError("None or a number of bytes >= 1")
    return int(value)


def _subscriber_wait(value):
    expected = "None or a pair (count, timeout_s) such as (1, 5.0): a whole count >= 1 " \
               "and a number of seconds > 0"
    if value is None:
        return value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(expected)
    count, timeout = value
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(expected)
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise ValueError(expected)
    return (int(count), float(timeout))


VALIDATORS = {
    "topic_prefix": _text,
    "environment": _text,
    "name": _optional_text,
    "endpoints": _endpoints,
    "relay_inbound": _optional_endpoint_list,
    "active": _flag,
    "active_connect_timeout": lambda value: value if value is None else _seconds(value),
    "io_threads": _int_at_least(0),
    "post_init_sleep": _seconds,
    "timeout": _seconds,
    "high_water_mark": _int_at_least(0),
    "on_full": _on_full,
    "send_timeout": _int_at_least(-1),
    "max_message_size": _optional_size,
    "wait_for_subscribers": _subscriber_wait,
    "zmq_linger": _int_at_least(-1),
    "zmq_enabled": _flag,
    "zmq_tcp_keepalive": _int_at_least(-1),
    "zmq_tcp_keepalive_cnt": _int_at_least(-1),
    "zmq_tcp_keepalive_idle": _int_at_least(-1),
    "zmq_tcp_keepalive_intvl": _int_at_least(-1),
    "zmq_reconnect_ivl": _int_at_least(-1),
    "zmq_reconnect_ivl_max": _int_at_least(0),
    "sign_messages": _flag,
    "mute": _flag,
    "crypto_backend": _optional_text,
    "ssldir": _optional_text,
    "certnames": _mapping,
    "cert_prefix": _optional_text,
    "crypto_digest": _digest_name,
    "validate_signatures": _flag,
    "crypto_validate_backends": _optional_text_list,
    "crypto_validate_digests": _digest_names,
    "ca_cert_location": _optional_text,
    "crl_location": _optional_text,
    "routing_policy": _optional_mapping,
    "routing_nitpicky": _flag,
    "stomp_uri": _optional_text,
    "stomp_user": _optional_text,
    "stomp_pass": _optional_text,
    "stomp_ssl_crt": _optional_text,
    "stomp_ssl_key": _optional_text,
    "stomp_heartbeat": _int_at_least(0),
    "stomp_ssl_ca": _optional_text,
    "stomp_vhost": _text,
    "stomp_destination": _destination_template,
    "stomp_confirm": _flag,
    "stomp_confirm_timeout": _positive_seconds,
    "stomp_connect_timeout": _positive_seconds,
    "stomp_queue_limit": _int_at_least(0),
}


# -- finding and reading files -------------------------------------------------

def _python_files_in(directory):
    # As fedmsg: every name ending in .py, hidden ones included (glob would
    # skip those), sorted; folders named *.py are skipped, not read.
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    paths = (os.path.join(directory, name) for name in names if name.endswith(".py"))
    return sorted(path for path in paths if os.path.isfile(path))


def config_files():
    """The config files that would be read now, in reading order."""
    override = os.environ.get("FEDMSG_CONFIG")
    if override:
        if os.path.isdir(override):
            return _python_files_in(override)
        return [override]

    folders = ["/etc/fedmsg.d", os.path.expanduser("~/.fedmsg.d"),
               os.path.join(os.getcwd(), "fedmsg.d")]
    if os.environ.get("VIRTUAL_ENV"):
        folders.append(os.path.join(os.environ["VIRTUAL_ENV"], "etc", "fedmsg.d"))
    singles = ["/etc/fedmsg-config.py", os.path.expanduser("~/.fedmsg-config.py"),
               os.path.join(os.getcwd(), "fedmsg-config.py")]
    found = []
    for folder in folders:
        found.extend(_python_files_in(folder))
    found.extend(path for path in singles if os.path.isfile(path))
    return found


def _read_file(path):
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise ConfigError("cannot read config file %s: %s" % (path, exc.strerror),
                          source=path) from exc
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(
            "config file %s has a syntax error at line %s: %s; fix the file or move it "
            "out of the config folder" % (path, exc.lineno, exc.msg), source=path) from exc

    namespace = {"__file__": path, "__name__": "fedmsg_config"}
    try:
        exec(code, namespace)
    except (Exception, SystemExit) as exc:
        # SystemExit too: a config file must not end the program reading it.
        line = traceback.extract_tb(exc.__traceback__)[-1].lineno
        raise ConfigError("config file %s failed at line %s: %s: %s"
                          % (path, line, type(exc).__name__, exc), source=path) from exc

    config = namespace.get("config")
    if not isinstance(config, dict):
        raise ConfigError(
            "config file %s must define a dict named 'config'; found %s"
            % (path, "nothing" if config is None else type(config).__name__), source=path)
    return config


def _merge(into, update, sources, path, top=True):
    for key, value in update.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value, sources, path, top=False)
        else:
            into[key] = copy.deepcopy(value)
        if top:
            sources[key] = path


class Config(dict):
    """The merged configuration: a dict, plus ``sources`` (key -> file) and
    ``files`` (the files read, in order)."""

    def __init__(self, values=(), sources=None, files=()):
        super().__init__(values)
        self.sources = dict(sources or {})
        self.files = list(files)

    def source_of(self, key):
        return self.sources.get(key, DEFAULT_SOURCE)


_cache = {}


def load_config(files=None, require_endpoints=True, **overrides):
    """Read and check the configuration; keyword arguments win over files.

    ``files`` replaces the search described in this module's docstring.
    Files are re-read only when one changed.  Raises ConfigError (a
    ValueError) naming the file and key of anything wrong.  ``endpoints`` is
    required, as fedmsg requires it, unless ``require_endpoints`` is False or
    the config is for active mode (which connects to relay_inbound instead).
    """
    paths = list(config_files() if files is None else files)
    stamp = tuple((path, _mtime(path)) for path in paths)
    if stamp not in _cache:
        merged, sources = {}, {}
        for path in paths:
            _merge(merged, _read_file(path), sources, path)
        _cache.clear()
        _cache[stamp] = (merged, sources)
    merged, sources = _cache[stamp]

    config = Config(copy.deepcopy(DEFAULTS), files=paths)
    for key, value in merged.items():
        config[key] = copy.deepcopy(value)
        config.sources[key] = sources[key]
    for key, value in overrides.items():
        config[key] = value
        config.sources[key] = KEYWORD_SOURCE

    check(config, require_endpoints)
    return config


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def check(config, require_endpoints=True):
    """Validate every known key in place; raise ConfigError on the first bad one."""
    if "endpoints" not in config and (not require_endpoints or config.get("active")):
        config["endpoints"] = {}
    if "endpoints" not in config:
        files = getattr(config, "files", [])
        where = ("read " + ", ".join(files)) if files else (
            "found no config file (set FEDMSG_CONFIG, or see fastfedmsg.config)")
        raise ConfigError(
            "no 'endpoints' in the configuration: %s. Define config['endpoints'] = "
            "{'NAME': ['tcp://127.0.0.1:PORT']} in a config file, or pass "
            "endpoints=... to init()" % where, key="endpoints")

    for key, validator in VALIDATORS.items():
        if key not in config:
            continue
        try:
            config[key] = validator(config[key])
        except ValueError as exc:
            source = config.source_of(key) if isinstance(config, Config) else "the config"
            raise ConfigError(
                "config key %r (set in %s) must be %s; found %s %r"
                % (key, source, exc, type(config[key]).__name__, config[key]),
                key=key, source=source) from None
    return config


#: Words that mark a key whose value is a secret, whatever the key's name.
SECRET_WORDS = ("pass", "secret", "token")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def _mask(key, value):
    if isinstance(value, dict):
        return {inner: _mask(inner, item) for inner, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(key, item) for item in value]
    if value and (key in SECRET_KEYS
                  or (isinstance(key, str) and any(word in key.lower() for word in SECRET_WORDS))):
        return MASK
    if isinstance(value, str):
        return _USERINFO.sub(r"\g<scheme>\g<user>:%s@" % MASK, value)
    return value


MASK = "********"


def masked(config):
    """A copy of ``config`` safe to print: passwords, secrets, tokens, key
    paths and the passwords inside URIs (scheme://user:PASSWORD@host) masked."""
    return {key: _mask(key, copy.deepcopy(value)) for key, value in dict(config).items()}

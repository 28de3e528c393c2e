"""X.509 signing, checked against real fedmsg 1.1.7 in both directions.

fastfedmsg signs, real fedmsg's fedmsg.crypto.validate checks (and the
reverse), with a CA, certificates and a CRL made for the test run
(tests/pki.py).  Signed messages travel over real ZeroMQ sockets on
127.0.0.1.  fedmsg validates with pyOpenSSL 24.2.1, which the test extra
pins: newer pyOpenSSL makes fedmsg 1.1.7 drop signing altogether.
"""

import base64
import copy
import datetime
import json
import shutil

import fedmsg.config
import fedmsg.core
import fedmsg.crypto
import fedmsg.encoding
import pytest
import zmq
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import fastfedmsg
from conftest import free_port, load_corpus
from fastfedmsg import crypto
from fastfedmsg.config import load_config
from fastfedmsg.errors import (
    CertnameError,
    ConfigError,
    InvalidMessageError,
    SigningKeyError,
)
from pki import Pki

pytestmark = pytest.mark.integration

HOST = crypto.short_hostname()
SVC_NAME = "svc.%s" % HOST
SVC_CN = "svc-host.example.com"
TOPIC = "org.fedoraproject.dev.tests.signed"


class Jsonable:
    """An object fedmsg's encoder turns into JSON through __json__()."""

    def __json__(self):
        return {"kind": "jsonable", "values": [1, 2.5, "é"]}


def special_bodies():
    """Bodies where a careless encoder would sign other bytes than fedmsg checks."""
    return [
        {"text": "naïve café ☃", "astral": "\U0001F600 \U0001D11E", "ctl": "tab\there\n"},
        {"floats": [0.1, 1e-07, 1.5e300, -0.0, 2.5, 1 / 3, 123456789.125, 5e-324]},
        {"big": 2 ** 100, "negative": -(2 ** 70), "edge": 2 ** 64, "small": -1},
        {"when": datetime.datetime(2021, 3, 4, 5, 6, 7), "day": datetime.date(2020, 2, 29)},
        {"tags": {"beta", "alpha", "gamma"}},
        {"object": Jsonable(), "list": [Jsonable()]},
        {"nested": {"z": [1, {"y": None, "x": True}], "a": "ü", "": "empty key"}},
        {"nonfinite": [float("nan"), float("inf"), float("-inf")]},
        "a body that is a plain string, ü",
        {},
    ]


def plain(value):
    """``value`` as a subscriber decodes it."""
    return json.loads(fedmsg.encoding.dumps(value))


def fedmsg_validate(message, **config):
    return fedmsg.crypto.validate(copy.deepcopy(message), **config)


def common_name(message):
    """The common name of the certificate a signed message carries."""
    pem = base64.b64decode(message["certificate"])
    subject = x509.load_pem_x509_certificate(pem).subject
    return subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# -- fixtures --------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pki = Pki(tmp_path_factory.mktemp("pki"))
    pki.issue("svc-host", SVC_CN)
    pki.issue("shell-host", "shell-host.example.com")
    pki.issue("prefix-host", "prefix-host.example.com")
    pki.issue("relay-host", "relay.example.com")
    pki.issue("revoked-host", "revoked.example.com")
    pki.revoke("revoked-host")
    pki.issue("rogue-host", "rogue.example.com", issuer="rogue")
    pki.issue("expired-host", "expired.example.com", expired=True)
    pki.issue("ec-host", "ec.example.com", key="ec")
    return pki


@pytest.fixture(scope="module")
def certnames():
    return {
        SVC_NAME: "svc-host",
        "shell.%s" % HOST: "shell-host",
        "pre.%s" % HOST: "prefix-host",
        "signing_relay": "relay-host",
    }


@pytest.fixture
def check_config(pki):
    """What a checker needs: the test CA and CRL, no routing policy."""
    return pki.config()


@pytest.fixture
def signer(pki, certnames):
    return crypto.Signer(pki.config(certnames=certnames, name=SVC_NAME))


@pytest.fixture(scope="module")
def module_signer(pki, certnames):
    return crypto.Signer(pki.config(certnames=certnames, name=SVC_NAME))


def envelope(body, i=1, topic=TOPIC):
    return {"topic": topic, "msg": body, "timestamp": 1700000000 + i,
            "msg_id": "2026-00000000-0000-4000-8000-%012d" % i, "i": i, "username": "tester"}


@pytest.fixture
def fedmsg_publisher(pki, certnames):
    """A real fedmsg context that signs; yields (context, endpoint)."""
    made = []

    def make(**overrides):
        port = free_port()
        config = dict(fedmsg.config.defaults)
        config.update(pki.config(certnames=certnames))
        config.update(name=SVC_NAME, endpoints={SVC_NAME: ["tcp://127.0.0.1:%d" % port]},
                      sign_messages=True, post_init_sleep=0, zmq_linger=0)
        config.update(overrides)
        if config.get("name") is None:
            del config["name"]  # fedmsg's active mode then takes relay_inbound
        context = fedmsg.core.FedMsgContext(**config)
        made.append(context)
        return context, "tcp://127.0.0.1:%d" % port

    yield make
    for context in made:
        if getattr(context, "publisher", None) is not None:
            context.publisher.setsockopt(zmq.LINGER, 0)
        context.destroy()


def fastfedmsg_init(pki, certnames, port, **overrides):
    config = pki.config(certnames=certnames)
    config.update(name=SVC_NAME, endpoints={SVC_NAME: ["tcp://127.0.0.1:%d" % port]},
                  sign_messages=True, post_init_sleep=0, zmq_linger=0)
    config.update(overrides)
    return fastfedmsg.init(**config)


def received_messages(sub, count):
    out = []
    for _ in range(count):
        topic, body = sub.recv(timeout=10)
        out.append((topic.decode("utf-8"), json.loads(body)))
    return out


# -- fastfedmsg signs, fedmsg checks -----------------------------------------------

def test_signed_frames_equal_fedmsgs_and_validate_both_ways(pki, certnames, signer):
    # PKCS#1 v1.5 is deterministic: the same key over the same bytes gives the
    # same signature, so the whole sent frame must equal fedmsg's, byte for byte.
    corpus = load_corpus()
    bodies = [entry["msg"] for entry in corpus[::25]] + special_bodies()
    config = pki.config(certnames=certnames, certname="svc-host")
    validator = crypto.Validator(pki.config())

    for index, body in enumerate(bodies):
        env = envelope(body, i=index + 1)
        theirs = fedmsg.crypto.sign(dict(env), **config)  # same body objects, same set order
        expected = fedmsg.encoding.dumps(theirs).encode("utf-8")
        assert signer.encode(env) == expected, "body %d: %r" % (index, body)
        assert validator.check(json.loads(expected)) is None, "body %d: %r" % (index, body)


def test_signature_and_certificate_text_is_wrapped_like_fedmsgs(signer):
    signed = signer.sign(envelope({"a": 1}))

    for field in ("signature", "certificate"):
        lines = signed[field].split("\n")
        assert signed[field].endswith("\n")
        assert lines[-1] == ""
        assert all(len(line) == 76 for line in lines[:-2])
        assert 0 < len(lines[-2]) <= 76
    assert signed["crypto"] == "x509"


def test_published_messages_validate_with_real_fedmsg(pki, certnames, check_config, port,
                                                     config_dir, subscriber_factory):
    corpus = load_corpus()
    bodies = [entry["msg"] for entry in corpus] + special_bodies()
    fastfedmsg_init(pki, certnames, port)
    sub = subscriber_factory("tcp://127.0.0.1:%d" % port)
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))

    for body in bodies:
        fastfedmsg.publish(topic="corpus", msg=body, modname="tests")

    received = received_messages(sub, len(bodies))
    validator = crypto.Validator(check_config)
    for (topic, message), body in zip(received, bodies):
        assert topic == "org.fedoraproject.dev.tests.corpus"
        assert set(message) == {"topic", "msg", "timestamp", "msg_id", "i", "username",
                                "crypto", "signature", "certificate"}
        assert json.dumps(message["msg"], sort_keys=True) == json.dumps(plain(body),
                                                                         sort_keys=True)
        assert fedmsg_validate(message, **check_config), message["msg"]
        assert validator.check(message) is None
        assert common_name(message) == SVC_CN


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@given(body=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5))
@settings(max_examples=60, deadline=None)
def test_any_json_body_signed_by_fastfedmsg_validates_with_fedmsg(module_signer, pki, body):
    # fedmsg re-reads its key on every sign (about 60 ms here), so byte
    # equality with fedmsg is checked on the corpus above, not on each example.
    wire = module_signer.encode(envelope(body))

    assert fedmsg_validate(json.loads(wire), **pki.config())


def test_integer_keyed_bodies_validate_with_fedmsg_when_signed_by_fastfedmsg(
        signer, check_config):
    # fedmsg signs such bodies with the keys sorted as numbers and cannot
    # validate its own signature; fastfedmsg signs what the checker decodes.
    env = envelope({"counts": {1: "one", 2: "two", 10: "ten"}, "other": {3: [4]}})

    received = json.loads(signer.encode(env))

    assert received["msg"] == {"counts": {"1": "one", "2": "two", "10": "ten"}, "other": {"3": [4]}}
    assert fedmsg_validate(received, **check_config)
    assert crypto.validate(received, **check_config)


def test_pre_fire_hook_sees_the_signed_envelope_and_publish_many_signs_each(
        pki, certnames, check_config, port, config_dir, subscriber_factory):
    fastfedmsg_init(pki, certnames, port)
    sub = subscriber_factory("tcp://127.0.0.1:%d" % port)
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))
    seen = []

    fastfedmsg.publish(topic="hooked", msg={"n": 0}, modname="tests", pre_fire_hook=seen.append)
    sent = fastfedmsg.publish_many([("many", {"n": 1}), {"topic": "many", "msg": {"n": 2}}],
                                   modname="tests")

    assert sent == 2
    assert seen[0]["signature"] and seen[0]["crypto"] == "x509"
    received = received_messages(sub, 3)
    assert received[0][1] == seen[0]
    assert [message["msg"]["n"] for _topic, message in received] == [0, 1, 2]
    assert [message["i"] for _topic, message in received] == sorted(
        message["i"] for _topic, message in received)
    for _topic, message in received:
        assert fedmsg_validate(message, **check_config)


def test_key_and_certificate_are_read_once_per_context(pki, certnames, check_config, port,
                                                       config_dir, subscriber_factory, tmp_path):
    ssldir = tmp_path / "ssl"
    ssldir.mkdir()
    for suffix in (".key", ".crt"):
        shutil.copy(pki.ssldir / ("svc-host" + suffix), ssldir / ("svc-host" + suffix))
    fastfedmsg_init(pki, certnames, port, ssldir=str(ssldir))
    sub = subscriber_factory("tcp://127.0.0.1:%d" % port)
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))

    for suffix in (".key", ".crt"):
        (ssldir / ("svc-host" + suffix)).unlink()
    fastfedmsg.publish(topic="after", msg={"files": "gone"}, modname="tests")

    (_topic, message), = received_messages(sub, 1)
    assert message["msg"] == {"files": "gone"}
    assert fedmsg_validate(message, **check_config)


# -- which certificate: fedmsg's lookup rules ------------------------------------------

@pytest.mark.parametrize("overrides, expected_cn", [
    ({}, SVC_CN),
    ({"cert_prefix": "pre"}, "prefix-host.example.com"),
    ({"active": True, "name": None}, "shell-host.example.com"),
], ids=["name", "cert_prefix", "relay_inbound"])
def test_certificate_choice_matches_fedmsg(pki, certnames, check_config, config_dir,
                                           subscriber_factory, fedmsg_publisher,
                                           overrides, expected_cn):
    active = overrides.get("active", False)
    got = {}

    for who in ("fedmsg", "fastfedmsg"):
        port = free_port()
        relay = "tcp://127.0.0.1:%d" % free_port()
        extra = dict(overrides)
        if active:
            extra.update(relay_inbound=relay)
            sub = subscriber_factory(relay, bind=True)
        if who == "fedmsg":
            context, endpoint = fedmsg_publisher(**extra)
            publish = context.publish
        else:
            fastfedmsg.destroy()
            fastfedmsg_init(pki, certnames, port, **extra)
            endpoint = "tcp://127.0.0.1:%d" % port
            publish = fastfedmsg.publish
        if not active:
            sub = subscriber_factory(endpoint)
        sub.wait_connected(lambda: publish(topic="probe", msg={}, modname="t"))

        publish(topic="choice", msg={"who": who}, modname="tests")

        (_topic, message), = received_messages(sub, 1)
        assert message["msg"] == {"who": who}
        assert fedmsg_validate(message, **check_config)
        got[who] = common_name(message)
        sub.close()

    assert got == {"fedmsg": expected_cn, "fastfedmsg": expected_cn}


@pytest.mark.parametrize("config, expected", [
    ({"name": "svc.h"}, "svc.h"),
    ({"name": "svc.h", "cert_prefix": "pre"}, "pre.myhost"),
    ({"name": "relay_inbound"}, "shell.myhost"),
    ({"name": "relay_inbound", "cert_prefix": "pre"}, "pre.myhost"),
])
def test_certname_key_rules(config, expected):
    assert crypto.certname_key(config, hostname="myhost") == expected


# -- errors at the first publish ------------------------------------------------------

@pytest.mark.parametrize("config, key, origin", [
    ({"name": "svc.h"}, "svc.h", "the publisher's name"),
    ({"name": "relay_inbound"}, "shell.myhost", "name 'relay_inbound'"),
    ({"name": "svc.h", "cert_prefix": "pre"}, "pre.myhost", "cert_prefix 'pre'"),
])
def test_missing_certname_message_says_where_the_key_came_from(config, key, origin):
    config = dict(config, certnames={"known": "file"}, ssldir="/pki")

    with pytest.raises(CertnameError) as caught:
        crypto.lookup_certname(config, hostname="myhost")

    assert caught.value.key == key
    for part in (repr(key), origin, "'known'", "/pki/CERTNAME.key", "/pki/CERTNAME.crt"):
        assert part in str(caught.value)


def test_missing_certname_raises_at_first_publish_naming_the_key(pki, port, config_dir):
    fastfedmsg_init(pki, {"other.name": "svc-host"}, port)

    with pytest.raises(CertnameError) as caught:
        fastfedmsg.publish(topic="x", msg={}, modname="tests")

    assert isinstance(caught.value, KeyError)  # what fedmsg raises here
    text = str(caught.value)
    assert repr(SVC_NAME) in text and "'other.name'" in text
    assert "%s/CERTNAME.key" % pki.ssldir in text and "CERTNAME.crt" in text
    assert caught.value.key == SVC_NAME


def test_missing_key_file_raises_at_first_publish_naming_the_files(pki, port, config_dir):
    fastfedmsg_init(pki, {SVC_NAME: "absent"}, port)

    with pytest.raises(SigningKeyError) as caught:
        fastfedmsg.publish(topic="x", msg={}, modname="tests")

    assert isinstance(caught.value, OSError)  # what fedmsg raises here
    key, cert = str(pki.ssldir / "absent.key"), str(pki.ssldir / "absent.crt")
    assert key in str(caught.value) and cert in str(caught.value)
    assert "certnames[%r] = 'absent'" % SVC_NAME in str(caught.value)
    assert caught.value.paths == [key, cert]


def test_missing_certificate_file_raises_at_first_publish(pki, port, config_dir, tmp_path):
    shutil.copy(pki.ssldir / "svc-host.key", tmp_path / "lonely.key")
    fastfedmsg_init(pki, {SVC_NAME: "lonely"}, port, ssldir=str(tmp_path))

    with pytest.raises(SigningKeyError, match="lonely.crt"):
        fastfedmsg.publish(topic="x", msg={}, modname="tests")


def test_key_of_another_certificate_is_refused(pki, port, config_dir, tmp_path):
    shutil.copy(pki.ssldir / "shell-host.key", tmp_path / "mixed.key")
    shutil.copy(pki.ssldir / "svc-host.crt", tmp_path / "mixed.crt")
    fastfedmsg_init(pki, {SVC_NAME: "mixed"}, port, ssldir=str(tmp_path))

    with pytest.raises(SigningKeyError, match="does not belong"):
        fastfedmsg.publish(topic="x", msg={}, modname="tests")


def test_non_rsa_key_is_refused(pki, port, config_dir):
    fastfedmsg_init(pki, {SVC_NAME: "ec-host"}, port)

    with pytest.raises(SigningKeyError, match="RSA"):
        fastfedmsg.publish(topic="x", msg={}, modname="tests")


def test_gpg_backend_is_refused_at_first_publish(pki, certnames, port, config_dir):
    fastfedmsg_init(pki, certnames, port, crypto_backend="gpg")

    with pytest.raises(ConfigError, match="crypto_backend"):
        fastfedmsg.publish(topic="x", msg={}, modname="tests")


def test_crypto_digest_config_is_checked():
    assert load_config(files=[], endpoints={}, crypto_digest="SHA256")["crypto_digest"] == "sha256"
    with pytest.raises(ConfigError, match="crypto_digest"):
        load_config(files=[], endpoints={}, crypto_digest="md5")


# -- fedmsg signs, fastfedmsg checks; tampering fails both -------------------------------

def tamper_cases(pki, signer):
    other = signer.sign(envelope({"other": True}, i=99))
    return {
        "topic": lambda m: m.__setitem__("topic", m["topic"] + ".x"),
        "msg": lambda m: m["msg"].__setitem__("who", "mallory"),
        "msg_id": lambda m: m.__setitem__("msg_id", m["msg_id"] + "0"),
        "timestamp": lambda m: m.__setitem__("timestamp", m["timestamp"] + 1),
        "i": lambda m: m.__setitem__("i", m["i"] + 1),
        "username": lambda m: m.__setitem__("username", m["username"] + "x"),
        "crypto removed": lambda m: m.pop("crypto"),
        "crypto gpg": lambda m: m.__setitem__("crypto", "gpg"),
        "extra field": lambda m: m.__setitem__("extra", 1),
        "signature": lambda m: m.__setitem__("signature", other["signature"]),
        "certificate": lambda m: m.__setitem__(
            "certificate", crypto.Signer(pki.config(), certname="shell-host").certificate_text),
    }


@pytest.mark.parametrize("origin", ["fedmsg", "fastfedmsg"])
def test_any_changed_field_fails_both_validators(origin, pki, certnames, check_config, signer,
                                                config_dir, subscriber_factory,
                                                fedmsg_publisher):
    if origin == "fedmsg":
        context, endpoint = fedmsg_publisher()
        publish = context.publish
    else:
        port = free_port()
        fastfedmsg_init(pki, certnames, port)
        endpoint = "tcp://127.0.0.1:%d" % port
        publish = fastfedmsg.publish
    sub = subscriber_factory(endpoint)
    sub.wait_connected(lambda: publish(topic="probe", msg={}, modname="t"))
    publish(topic="original", msg={"who": origin, "text": "é"}, modname="tests")
    (_topic, original), = received_messages(sub, 1)

    assert fedmsg_validate(original, **check_config)
    assert crypto.validate(original, **check_config)
    for field, change in tamper_cases(pki, signer).items():
        message = copy.deepcopy(original)
        change(message)
        assert not fedmsg_validate(message, **check_config), field
        assert not crypto.validate(message, **check_config), field
        assert crypto.Validator(check_config).check(message), field


# -- trust: CA, CRL, routing policy; fastfedmsg agrees with fedmsg -------------------------

def signed_by(pki, certname, topic=TOPIC, **config):
    return plain(crypto.Signer(pki.config(**config), certname=certname)
                 .sign(envelope({"by": certname}, topic=topic)))


@pytest.mark.parametrize("certname, valid", [
    ("svc-host", True),
    ("revoked-host", False),
    ("rogue-host", False),
    ("expired-host", False),
])
def test_certificate_trust_agrees_with_fedmsg(pki, check_config, certname, valid):
    message = signed_by(pki, certname)

    assert fedmsg_validate(message, **check_config) is valid
    assert crypto.validate(message, **check_config) is valid
    reason = crypto.Validator(check_config).check(message)
    assert (reason is None) is valid
    if certname == "revoked-host":
        assert "revoked" in reason


@pytest.mark.parametrize("crl, certname, valid", [
    ("none", "svc-host", True),
    ("none", "revoked-host", True),
    ("expired", "svc-host", False),
    ("rogue", "svc-host", False),
])
def test_crl_rules_agree_with_fedmsg(pki, tmp_path, crl, certname, valid):
    if crl == "none":
        config = pki.config(crl_location=None)
    else:
        path = pki.write_crl(path=tmp_path / ("crl-%s.pem" % crl), expired=(crl == "expired"),
                             issuer="rogue" if crl == "rogue" else "ca")
        config = pki.config(crl_location=str(path))
    message = signed_by(pki, certname)

    assert fedmsg_validate(message, **config) is valid
    assert crypto.validate(message, **config) is valid


@pytest.mark.parametrize("policy, nitpicky, valid", [
    ({TOPIC: [SVC_CN]}, False, True),
    ({TOPIC: ["someone.else.example.com"]}, False, False),
    ({"org.fedoraproject.dev.other": ["someone"]}, False, True),
    ({"org.fedoraproject.dev.other": ["someone"]}, True, False),
    ({TOPIC: [SVC_CN]}, True, True),
])
def test_routing_policy_agrees_with_fedmsg(pki, policy, nitpicky, valid):
    config = pki.config(routing_policy=policy, routing_nitpicky=nitpicky)
    message = signed_by(pki, "svc-host")

    assert fedmsg_validate(message, **config) is valid
    assert crypto.validate(message, **config) is valid


def test_validate_signed_by_agrees_with_fedmsg(pki, check_config):
    message = signed_by(pki, "svc-host")

    for signer_name, valid in ((SVC_CN, True), ("relay.example.com", False)):
        assert fedmsg.crypto.validate_signed_by(
            copy.deepcopy(message), signer_name, **check_config) is valid
        assert crypto.validate_signed_by(message, signer_name, **check_config) is valid


def test_unsigned_and_gpg_messages_are_invalid(check_config):
    unsigned = plain(envelope({"a": 1}))
    gpg = dict(unsigned, crypto="gpg", signature="c2ln\n")

    for message in (unsigned, gpg):
        assert fedmsg_validate(message, **check_config) is False
        assert crypto.validate(message, **check_config) is False


def test_sha256_signatures_are_for_checkers_that_accept_them(pki, certnames, check_config):
    signer = crypto.Signer(pki.config(certnames=certnames, name=SVC_NAME,
                                      crypto_digest="sha256"))
    message = plain(signer.sign(envelope({"digest": "sha256"})))

    assert crypto.validate(message, **check_config)
    assert not fedmsg_validate(message, **check_config)  # fedmsg checks SHA-1 only
    strict = dict(check_config, crypto_validate_digests=["sha1"])
    assert not crypto.validate(message, **strict)


def test_relay_resigns_an_already_signed_message(pki, certnames, check_config, signer):
    # fedmsg-signing-relay signs with certnames["signing_relay"]; the old
    # signature and certificate are replaced, not signed over.
    original = plain(signer.sign(envelope({"hop": 1})))
    relay = crypto.Signer(pki.config(certnames=certnames), certnames_key="signing_relay")

    resigned = json.loads(relay.sign_frame(json.dumps(original).encode("utf-8")))

    assert common_name(resigned) == "relay.example.com"
    assert resigned["signature"] != original["signature"]
    assert fedmsg_validate(resigned, **check_config)
    assert crypto.validate(resigned, **check_config)
    with pytest.raises(InvalidMessageError):
        relay.sign_frame(b"[1, 2]")


def test_module_level_sign_follows_fedmsgs_keywords(pki, certnames, check_config):
    env = envelope({"api": "sign"})

    ours = crypto.sign(copy.deepcopy(env), **pki.config(certname="svc-host"))
    theirs = fedmsg.crypto.sign(copy.deepcopy(env), **pki.config(certname="svc-host"))

    assert fedmsg.encoding.dumps(ours) == fedmsg.encoding.dumps(theirs)
    assert crypto.validate(plain(theirs), **check_config)

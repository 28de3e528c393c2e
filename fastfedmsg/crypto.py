"""X.509 signing and validation of fedmsg messages, as fedmsg's checkers expect.

Theory of operation
-------------------
fedmsg 1.1.7 signs an envelope like this: it sets ``crypto`` to ``"x509"``,
encodes the envelope with its canonical JSON encoder (sorted keys, ``,`` and
``:`` without spaces, non-ASCII escaped, Python's float formatting), signs
those bytes with the sender's RSA key (PKCS#1 v1.5, SHA-1), and adds two text
fields: ``signature`` and ``certificate`` (the PEM certificate), both base64
broken every 76 characters and ending in a newline.  A checker decodes the
JSON it received, removes ``signature`` and ``certificate`` (``crypto``
stays), encodes the rest again with the same encoder and verifies.  So what
is signed must be exactly the canonical encoding of what the checker will
decode: that is ``fastfedmsg._core.canonical_encoder``, not orjson's bytes.

Signer does this with one difference from fedmsg: the envelope is first
passed once through JSON (encode, decode) so that the signed bytes and the
sent frame are those of the decoded message.  For ordinary bodies nothing
changes; for a body with non-string keys, which fedmsg signs with the keys
sorted as numbers while its checker sorts the decoded text keys, fedmsg
cannot validate its own signature, whereas this one validates.

Which certificate signs (fedmsg's rules, see certname_key)::

    certnames[cert_prefix + "." + short host name]   when cert_prefix is set
    certnames[name]                                  otherwise
    certnames["shell." + short host name]            when name is relay_inbound

from ``ssldir/CERTNAME.key`` and ``ssldir/CERTNAME.crt``.  Both files are read
once, when the Signer is made; SigningPublisher makes it at the first
publish, so a missing name or file raises there (CertnameError,
SigningKeyError) with the key looked up and the files expected.

A validator (Validator, validate) applies fedmsg's four rules: the
certificate was issued by the CA at ``ca_cert_location``; neither it nor the
CA is revoked by the CRL at ``crl_location`` (when one is set), which must be
signed by that CA and current; the signature verifies; the certificate's
common name may send on the topic (``routing_policy``,
``routing_nitpicky``).  Chain checks use the ``cryptography`` package only;
fedmsg used pyOpenSSL's X509Store for them.

Config keys used here (see fastfedmsg.config): sign_messages, crypto_backend,
crypto_digest, ssldir, certnames, cert_prefix, name; validate_signatures,
crypto_validate_backends, crypto_validate_digests, ca_cert_location,
crl_location, routing_policy, routing_nitpicky.
"""

import base64
import binascii
import datetime
import json
import logging
import os
import socket
import threading
import urllib.request

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID
except ImportError as exc:  # pragma: no cover - only without the 'sign' extra
    raise ImportError(
        "fastfedmsg's message signing needs the 'cryptography' package (%s); install it "
        "with \"pip install 'fastfedmsg[sign]'\" or \"pip install 'cryptography>=41'\"" % exc
    ) from exc

from fastfedmsg import _core
from fastfedmsg.errors import (
    CertnameError,
    ConfigError,
    EncodeError,
    InvalidMessageError,
    PublishManyError,
    SigningKeyError,
)

log = logging.getLogger(__name__)

#: The digests a signature may use: fedmsg's checkers accept only sha1.
DIGESTS = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: fedmsg's defaults when the config names no CA or CRL: Fedora's, over HTTPS.
DEFAULT_CA_LOCATION = "https://fedoraproject.org/fedmsg/ca.crt"
DEFAULT_CRL_LOCATION = "https://fedoraproject.org/fedmsg/crl.pem"
DEFAULT_SSLDIR = "/etc/pki/fedmsg"

_CREDENTIALS = ("signature", "certificate")
_canonical_encode = _core.canonical_encoder.encode
_PADDING = padding.PKCS1v15()


def _digest(name, key="crypto_digest"):
    try:
        return DIGESTS[str(name).lower()]()
    except KeyError:
        raise ConfigError(
            "config key %r must be one of %s; found %r (fedmsg's checkers accept only "
            "'sha1')" % (key, ", ".join(sorted(DIGESTS)), name), key=key) from None


def short_hostname():
    """The host name up to its first dot, as fedmsg uses it for certnames."""
    return socket.gethostname().split(".", 1)[0]


# -- which certificate signs -----------------------------------------------------

def certname_key(config, hostname=None):
    """The ``certnames`` key fedmsg looks up for this config.

    ``cert_prefix + "." + hostname`` when cert_prefix is set, else ``name``,
    where a name of ``relay_inbound`` (an active publisher) stands for
    ``"shell." + hostname``.
    """
    hostname = hostname or short_hostname()
    if config.get("cert_prefix"):
        return "%s.%s" % (config["cert_prefix"], hostname)
    name = config.get("name")
    if name == "relay_inbound":
        return "shell.%s" % hostname
    return name


def lookup_certname(config, key=None, hostname=None):
    """``certnames[key]`` (key defaults to certname_key(config)), or CertnameError."""
    derived = key is None
    if derived:
        key = certname_key(config, hostname)
    certnames = config.get("certnames") or {}
    if key in certnames:
        return certnames[key]

    if not derived:
        why = "the caller (fedmsg's signing relay uses 'signing_relay')"
    elif config.get("cert_prefix"):
        why = "cert_prefix %r + '.' + the short host name" % config["cert_prefix"]
    elif config.get("name") == "relay_inbound":
        why = "name 'relay_inbound' (active=True), which maps to shell.<short host name>"
    else:
        why = "the publisher's name"
    ssldir = config.get("ssldir") or DEFAULT_SSLDIR
    # Turning signing off is a way out only for a publisher; a signing relay
    # exists to sign.
    way_out = ", or set sign_messages=False" if derived else ""
    raise CertnameError(
        "signing needs certnames[%r], but certnames has no such entry (the key comes "
        "from %s); certnames has %s. Add certnames[%r] = 'CERTNAME' to the config, "
        "with the key and certificate in %s/CERTNAME.key and %s/CERTNAME.crt%s" % (
            key, why, ("keys %s" % ", ".join(repr(k) for k in sorted(certnames, key=str)))
            if certnames else "no entries", key, ssldir, ssldir, way_out),
        key=key)


# -- signing ---------------------------------------------------------------------

class Signer:
    """Signs envelopes with one key pair, read from disk once, when made.

    ``Signer(config)`` picks the certificate by fedmsg's rules (see
    certname_key); ``certnames_key="signing_relay"`` looks up that key of
    ``certnames`` instead (what fedmsg-signing-relay does); ``certname``
    names the files directly.
    Raises CertnameError, SigningKeyError, or ConfigError for a bad
    crypto_backend or crypto_digest.
    """

    def __init__(self, config, certnames_key=None, certname=None, hostname=None):
        backend = config.get("crypto_backend") or "x509"
        if backend != "x509":
            raise ConfigError(
                "crypto_backend %r is not supported by fastfedmsg, which signs with X.509 "
                "only; set crypto_backend='x509' (with ssldir and certnames) or "
                "sign_messages=False" % (backend,), key="crypto_backend")
        self.digest_name = str(config.get("crypto_digest") or "sha1").lower()
        self._hash = _digest(self.digest_name)

        if certname is None:
            certname = lookup_certname(config, certnames_key, hostname)
            self.source = "certnames[%r] = %r" % (
                certname_key(config, hostname) if certnames_key is None else certnames_key,
                certname)
        else:
            self.source = "certname %r" % (certname,)
        self.certname = certname
        ssldir = config.get("ssldir") or DEFAULT_SSLDIR
        self.key_path = os.path.join(ssldir, "%s.key" % certname)
        self.cert_path = os.path.join(ssldir, "%s.crt" % certname)

        self._key = self._load_key()
        certificate = self._load_certificate()
        if certificate.public_key().public_numbers() != self._key.public_key().public_numbers():
            raise SigningKeyError(
                "the private key %s does not belong to the certificate %s; put the "
                "matching pair in place (%s)"
                % (self.key_path, self.cert_path, self.source), paths=self._paths())
        self.common_name = _common_name(certificate)
        # fedmsg sends the certificate as re-serialised PEM, not the file's bytes.
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        self.certificate_text = base64.encodebytes(pem).decode("ascii")
        log.debug("signing with %s (%s, CN %r, %s)", self.cert_path, certname,
                  self.common_name, self.digest_name)

    def _paths(self):
        return [self.key_path, self.cert_path]

    def _read(self, path, what):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise SigningKeyError(
                "cannot read the %s for %s at %s: %s. Signing needs %s and "
                "%s; check ssldir and certnames, and that this user may read both"
                % (what, self.source, path, exc.strerror or exc, self.key_path,
                   self.cert_path), paths=self._paths()) from exc

    def _load_key(self):
        data = self._read(self.key_path, "private key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SigningKeyError(
                "%s is not an unencrypted PEM private key (%s); fedmsg signs with an RSA "
                "key without a passphrase" % (self.key_path, exc), paths=self._paths()) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningKeyError(
                "%s holds a %s key; fedmsg's checkers verify RSA (PKCS#1 v1.5) signatures "
                "only, so use an RSA key" % (self.key_path, type(key).__name__),
                paths=self._paths())
        return key

    def _load_certificate(self):
        data = self._read(self.cert_path, "certificate")
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise SigningKeyError(
                "%s is not a PEM X.509 certificate (%s)" % (self.cert_path, exc),
                paths=self._paths()) from exc

    def signed_bytes(self, envelope):
        """The JSON text (as a dict) and bytes that get signed for ``envelope``."""
        unsigned = {key: value for key, value in envelope.items() if key not in _CREDENTIALS}
        unsigned["crypto"] = "x509"
        try:
            plain = json.loads(_canonical_encode(unsigned))
            text = _canonical_encode(plain)
        except TypeError as exc:
            raise _encode_error(exc) from exc
        except (ValueError, RecursionError) as exc:
            raise InvalidMessageError(
                "cannot encode the message as JSON to sign it: %s; break the cycle or "
                "reduce the nesting" % (exc,)) from exc
        return plain, text.encode("utf-8")

    def sign(self, envelope):
        """A new, signed envelope: ``envelope`` as its subscribers will decode it,
        plus ``crypto``, ``signature`` and ``certificate``.  ``envelope`` is not
        changed; a ``signature`` or ``certificate`` it has is replaced."""
        plain, data = self.signed_bytes(envelope)
        signature = self._key.sign(data, _PADDING, self._hash)
        plain["signature"] = base64.encodebytes(signature).decode("ascii")
        plain["certificate"] = self.certificate_text
        return plain

    def encode(self, envelope):
        """The signed envelope's frame: bytes exactly as fedmsg would send them."""
        return _canonical_encode(self.sign(envelope)).encode("utf-8")

    def sign_frame(self, frame):
        """Sign a received message frame (JSON bytes or text) and return the
        signed frame, as a signing relay forwards it.  Raises
        InvalidMessageError when the frame is not a JSON object."""
        try:
            envelope = json.loads(frame)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidMessageError(
                "cannot sign a frame that is not JSON: %s" % (exc,)) from exc
        if not isinstance(envelope, dict):
            raise InvalidMessageError(
                "cannot sign a frame that is not a JSON object (found %s); fedmsg "
                "envelopes are objects" % type(envelope).__name__)
        return self.encode(envelope)


def _encode_error(exc):
    return EncodeError(
        "cannot encode the message body as JSON to sign it: %s; a body may hold dicts, "
        "lists, strings, numbers, booleans, None, datetimes, sets and objects with a "
        "__json__() method" % (exc,))


_signers = {}
_signers_lock = threading.Lock()


def sign(message, **config):
    """Sign one envelope, as fedmsg.crypto.sign does; returns the new dict.

    The certificate is ``config["certname"]`` when given (fedmsg's keyword),
    else found by fedmsg's lookup rules.  Key pairs are cached by file name,
    so repeated calls read the files once.
    """
    certname = config.get("certname") or lookup_certname(config)
    cache_key = (config.get("ssldir") or DEFAULT_SSLDIR, certname,
                 str(config.get("crypto_digest") or "sha1").lower(),
                 config.get("crypto_backend") or "x509")
    with _signers_lock:
        signer = _signers.get(cache_key)
    if signer is None:
        signer = Signer(config, certname=certname)
        with _signers_lock:
            _signers[cache_key] = signer
    return signer.sign(message)


class SigningPublisher:
    """Wraps a publisher (fastfedmsg._core.Publisher, or any object with
    ``build`` and ``send_frames``) so that every envelope is signed.

    Each publish builds the envelope as a dict, signs it, calls
    ``pre_fire_hook`` with the signed dict (as fedmsg does), encodes it and
    sends it with ``send_frames``.  The Signer is made at the first publish,
    so configuration errors surface there; after a failure the next publish
    tries again.
    """

    def __init__(self, publisher, config, hostname=None):
        self.publisher = publisher
        self.config = config
        self.hostname = hostname or short_hostname()
        self._signer = None

    @property
    def signer(self):
        if self._signer is None:
            self._signer = Signer(self.config, hostname=self.hostname)
        return self._signer

    @property
    def sent(self):
        return self.publisher.sent

    @property
    def i(self):
        return self.publisher.i

    @property
    def closed(self):
        return self.publisher.closed

    def full_topic(self, topic=None, modname=None):
        return self.publisher.full_topic(topic, modname)

    def build(self, topic=None, msg=None, modname=None, pre_fire_hook=None):
        """(frame0, signed envelope dict, frame1) without sending."""
        signer = self.signer
        captured = []
        if not modname:
            modname = _core.guess_modname()
        frame0, _unused, _frame = self.publisher.build(topic, msg, modname, captured.append)
        signed = signer.sign(captured[0])
        if pre_fire_hook is not None:
            pre_fire_hook(signed)
        try:
            frame1 = _canonical_encode(signed).encode("utf-8")
        except TypeError as exc:
            raise _encode_error(exc) from exc
        return frame0, signed, frame1

    def publish(self, topic=None, msg=None, modname=None, pre_fire_hook=None):
        """Sign and publish one message, as fedmsg.publish does with sign_messages."""
        frame0, _signed, frame1 = self.build(topic, msg, modname, pre_fire_hook)
        self.publisher.send_frames(frame0, frame1)

    def publish_many(self, items, modname=None):
        """Sign and publish every item; the contract of Publisher.publish_many."""
        index = 0
        if not modname:
            modname = _core.guess_modname()
        for item in items:
            try:
                if isinstance(item, dict):
                    self.publish(item.get("topic"), item.get("msg"),
                                 item.get("modname") or modname)
                elif isinstance(item, (tuple, list)) and len(item) == 2:
                    self.publish(item[0], item[1], modname)
                else:
                    raise InvalidMessageError(
                        "expected a (topic, msg) pair or a dict with 'topic' and 'msg', "
                        "found %s" % (type(item).__name__,))
            except (TypeError, ValueError) as exc:
                raise PublishManyError(index, exc) from exc
            index += 1
        return index

    def close(self):
        self.publisher.close()


# -- validation ------------------------------------------------------------------

def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def _aware(value):
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _cert_window(certificate):
    if hasattr(certificate, "not_valid_before_utc"):
        return certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return _aware(certificate.not_valid_before), _aware(certificate.not_valid_after)


def _crl_window(crl):
    if hasattr(crl, "last_update_utc"):
        return crl.last_update_utc, crl.next_update_utc
    return _aware(crl.last_update), crl.next_update and _aware(crl.next_update)


def _common_name(certificate):
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None


def _read_location(location):
    """The text at a file path or an https:// URL (fedmsg accepts both)."""
    if location.startswith("https://"):
        log.info("downloading %s", location)
        with urllib.request.urlopen(location, timeout=30) as response:
            return response.read()
    with open(location, "rb") as handle:
        return handle.read()


class TrustAnchors:
    """The CA certificate and the optional CRL a validator checks against.

    Signature checks that do not change with time (the CRL's, and whether the
    CA issued a given certificate) are made once and remembered; validity
    periods and revocation are checked on every call.
    """

    def __init__(self, ca_location, crl_location=None):
        self.ca_location = ca_location
        self.crl_location = crl_location or None
        # fedmsg (pyOpenSSL) trusts the first certificate of the CA file.
        self.ca = x509.load_pem_x509_certificate(_read_location(ca_location))
        self.crl = None
        if self.crl_location:
            self.crl = x509.load_pem_x509_crl(_read_location(self.crl_location))
        self._ca_problem = self._check_ca()
        self._issued = {}

    def _check_ca(self):
        try:
            constraints = self.ca.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is not None and not constraints.value.ca:
            return "the CA certificate is not marked as a CA (basicConstraints CA:FALSE)"
        try:
            usage = self.ca.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            return "the CA certificate's keyUsage does not allow signing certificates"
        crl = self.crl
        if crl is None:
            return None
        if usage is not None and not usage.crl_sign:
            return "the CA certificate's keyUsage does not allow signing CRLs"
        if crl.issuer != self.ca.subject:
            return "the CRL was issued by %s, not by the CA" % crl.issuer.rfc4514_string()
        if not crl.is_signature_valid(self.ca.public_key()):
            return "the CRL's signature does not verify with the CA's key"
        return None

    def _issuer_problem(self, certificate):
        if certificate in self._issued:
            return self._issued[certificate]
        try:
            certificate.verify_directly_issued_by(self.ca)
            problem = None
        except ValueError:
            problem = "the certificate was issued by %s, not by the CA %s" % (
                certificate.issuer.rfc4514_string(), self.ca.subject.rfc4514_string())
        except (InvalidSignature, TypeError, UnsupportedAlgorithm):
            problem = "the certificate's signature does not verify with the CA's key"
        if len(self._issued) > 256:
            self._issued.clear()
        self._issued[certificate] = problem
        return problem

    def problem(self, certificate, now=None):
        """Why ``certificate`` is not trusted, or None when it is."""
        ca, crl = self.ca, self.crl
        now = now or _utc_now()

        problem = self._ca_problem or self._issuer_problem(certificate)
        if problem:
            return problem
        for which, cert in (("certificate", certificate), ("CA certificate", ca)):
            start, end = _cert_window(cert)
            if now < start:
                return "the %s is not valid before %s" % (which, start.isoformat())
            if now > end:
                return "the %s expired on %s" % (which, end.isoformat())

        if crl is None:
            return None
        last_update, next_update = _crl_window(crl)
        if now < last_update:
            return "the CRL is not valid before %s" % last_update.isoformat()
        if next_update is not None and now > next_update:
            return "the CRL expired on %s; publish a fresh one" % next_update.isoformat()
        for which, cert in (("certificate", certificate), ("CA certificate", ca)):
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return "the %s (serial %x, CN %r) is revoked by the CRL" % (
                    which, cert.serial_number, _common_name(cert))
        return None


_anchors = {}
_anchors_lock = threading.Lock()


def load_trust_anchors(ca_location, crl_location=None, reload=False):
    """TrustAnchors for these locations, cached per process as fedmsg does."""
    key = (ca_location, crl_location or None)
    with _anchors_lock:
        anchors = None if reload else _anchors.get(key)
    if anchors is None:
        anchors = TrustAnchors(ca_location, crl_location)
        with _anchors_lock:
            _anchors[key] = anchors
    return anchors


def strip_credentials(message):
    """A copy of ``message`` without ``signature`` and ``certificate``."""
    return {key: value for key, value in message.items() if key not in _CREDENTIALS}


def policy_problem(topic, signer, routing_policy, nitpicky=False):
    """Why ``signer`` may not send on ``topic``, or None (fedmsg's routing rules)."""
    if routing_policy and topic in routing_policy:
        if signer in routing_policy[topic]:
            return None
        return "the routing policy does not allow %r to send on %r" % (signer, topic)
    if nitpicky:
        return "routing_nitpicky is set and the routing policy has no entry for %r" % (topic,)
    return None


def _as_text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


class Validator:
    """fedmsg's signature checks, with the trust anchors and settings of one config.

    ``check(message)`` returns None for a valid message, or the reason it is
    not; ``validate(message)`` returns a bool and logs the reason at warning.
    """

    def __init__(self, config):
        self.ca_location = config.get("ca_cert_location") or DEFAULT_CA_LOCATION
        self.crl_location = config.get("crl_location", DEFAULT_CRL_LOCATION)
        self.routing_policy = config.get("routing_policy") or {}
        self.nitpicky = bool(config.get("routing_nitpicky", False))
        backends = config.get("crypto_validate_backends") or [
            config.get("crypto_backend") or "x509"]
        self.accepts_x509 = "x509" in backends
        digests = config.get("crypto_validate_digests") or ("sha1", "sha256")
        self._hashes = [_digest(name, "crypto_validate_digests") for name in digests]
        self._certificates = {}

    def _certificate(self, text):
        """(certificate, common name) for the base64 text of a PEM certificate."""
        entry = self._certificates.get(text)
        if entry is None:
            certificate = x509.load_pem_x509_certificate(base64.b64decode(text))
            entry = (certificate, _common_name(certificate))
            if len(self._certificates) > 256:
                self._certificates.clear()
            self._certificates[text] = entry
        return entry

    def _anchors_problem(self, certificate):
        # Like fedmsg: on failure, reload the CA and CRL once (they may have
        # been rotated) and check again.
        try:
            problem = load_trust_anchors(self.ca_location, self.crl_location).problem(certificate)
        except (OSError, ValueError) as exc:
            problem = "cannot load the CA or CRL: %s" % (exc,)
        if problem is None:
            return None
        try:
            anchors = load_trust_anchors(self.ca_location, self.crl_location, reload=True)
        except (OSError, ValueError) as exc:
            return "cannot load the CA %s or CRL %s: %s" % (
                self.ca_location, self.crl_location, exc)
        return anchors.problem(certificate)

    def check(self, message):
        """None if ``message`` is validly signed and allowed on its topic, else why not."""
        if not isinstance(message, dict):
            return "a message is a dict, found %s" % type(message).__name__
        crypto = message.get("crypto")
        if crypto is None and "certificate" not in message:
            return ("the message is not signed (no certificate)" if "signature" not in message
                    else "the message is signed with gpg, which fastfedmsg does not check")
        if crypto is not None and crypto != "x509":
            return "the message names crypto backend %r; only x509 is checked" % (crypto,)
        if not self.accepts_x509:
            return "crypto_validate_backends does not allow x509"
        for field in _CREDENTIALS:
            if field not in message:
                return "the message has no %r field" % field

        try:
            signature = base64.b64decode(_as_text(message["signature"]))
            certificate, common_name = self._certificate(_as_text(message["certificate"]))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            return "the signature or certificate cannot be decoded: %s" % (exc,)

        problem = self._anchors_problem(certificate)
        if problem:
            return problem

        try:
            data = _canonical_encode(strip_credentials(message)).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return "the message cannot be encoded as JSON: %s" % (exc,)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            return "the certificate holds a %s key, not RSA" % type(public_key).__name__
        for digest in self._hashes:
            try:
                public_key.verify(signature, data, _PADDING, digest)
                break
            except InvalidSignature:
                continue
        else:
            return "the signature does not match the message (%s)" % (
                "/".join(h.name for h in self._hashes),)

        return policy_problem(message.get("topic"), common_name,
                              self.routing_policy, self.nitpicky)

    def validate(self, message):
        problem = self.check(message)
        if problem is None:
            return True
        log.warning("invalid message %s on %s: %s", message.get("msg_id")
                    if isinstance(message, dict) else None,
                    message.get("topic") if isinstance(message, dict) else None, problem)
        return False


_validators = {}
_validators_lock = threading.Lock()


def _validator_for(config):
    key = repr(sorted((k, config.get(k)) for k in (
        "ca_cert_location", "crl_location", "routing_policy", "routing_nitpicky",
        "crypto_validate_backends", "crypto_backend", "crypto_validate_digests")))
    with _validators_lock:
        validator = _validators.get(key)
        if validator is None:
            if len(_validators) > 64:
                _validators.clear()
            validator = _validators[key] = Validator(config)
    return validator


def validate(message, **config):
    """True if ``message`` is signed as fedmsg.crypto.validate requires.

    Checks the certificate against the CA (``ca_cert_location``) and CRL
    (``crl_location``; fedmsg's Fedora URLs when unset), the signature, and
    the routing policy.  Invalid messages are logged at warning with the
    reason; use Validator(config).check(message) to get the reason instead.
    """
    return _validator_for(config).validate(message)


def validate_signed_by(message, signer, **config):
    """validate(), and the certificate's common name must be ``signer``."""
    config = dict(config)
    config["routing_nitpicky"] = True
    config["routing_policy"] = {message.get("topic"): [signer]}
    return validate(message, **config)

"""A throwaway certificate authority for signing tests, made with ``cryptography``.

``Pki(directory)`` writes, in ``directory``: ``ca.crt`` (a self-signed CA),
``crl.pem`` (its CRL, rewritten whenever a certificate is revoked) and, for
each ``issue(certname, ...)``, ``certname.key`` and ``certname.crt``, the
layout fedmsg expects in ``ssldir``.  A second, untrusted CA issues
certificates with ``issuer="rogue"``.  Keys are RSA 2048 unless told
otherwise, as in a real fedmsg deployment.
"""

import datetime
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ONE_DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _name(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastfedmsg tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL
                             if isinstance(key, rsa.RSAPrivateKey)
                             else serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _Authority:
    def __init__(self, common_name):
        self.key = _rsa_key()
        now = _now()
        self.name = _name(common_name)
        public = self.key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - ONE_DAY)
            .not_valid_after(now + 3650 * ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.revoked = []  # (serial, when)

    def issue(self, common_name, public_key, not_before, not_after):
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def crl(self, last_update, next_update):
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.name)
            .last_update(last_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(len(self.revoked) + 1), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        for serial, when in self.revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(when)
                .build())
        return builder.sign(self.key, hashes.SHA256())


class Pki:
    """A test CA, its CRL and the certificates it issued, as files in ``directory``."""

    def __init__(self, directory):
        self.ssldir = pathlib.Path(directory)
        self.ssldir.mkdir(parents=True, exist_ok=True)
        self.ca_path = self.ssldir / "ca.crt"
        self.crl_path = self.ssldir / "crl.pem"
        self.authority = _Authority("fastfedmsg test CA")
        self.rogue = None
        self.certificates = {}
        self.ca_path.write_bytes(
            self.authority.certificate.public_bytes(serialization.Encoding.PEM))
        self.write_crl()

    def issue(self, certname, common_name=None, issuer="ca", expired=False, key="rsa"):
        """Write ``certname.key`` and ``certname.crt``; return the certificate.

        ``issuer="rogue"`` signs it with a CA nobody trusts; ``expired=True``
        makes one whose validity ended yesterday; ``key="ec"`` uses an
        elliptic-curve key (which fedmsg's checkers cannot verify).
        """
        if issuer == "rogue":
            if self.rogue is None:
                self.rogue = _Authority("rogue CA")
            authority = self.rogue
        else:
            authority = self.authority
        private = _rsa_key() if key == "rsa" else ec.generate_private_key(ec.SECP256R1())
        now = _now()
        if expired:
            not_before, not_after = now - 30 * ONE_DAY, now - ONE_DAY
        else:
            not_before, not_after = now - ONE_DAY, now + 365 * ONE_DAY
        certificate = authority.issue(common_name or certname, private.public_key(),
                                      not_before, not_after)
        (self.ssldir / ("%s.key" % certname)).write_bytes(_pem_key(private))
        (self.ssldir / ("%s.crt" % certname)).write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM))
        self.certificates[certname] = certificate
        return certificate

    def revoke(self, certname):
        """Add ``certname``'s certificate to the CRL and rewrite crl.pem."""
        self.authority.revoked.append((self.certificates[certname].serial_number,
                                       _now() - datetime.timedelta(hours=1)))
        self.write_crl()

    def write_crl(self, expired=False, path=None, issuer="ca"):
        """Write the CRL (to crl.pem unless ``path`` is given); ``expired=True``
        writes one whose next update was yesterday; ``issuer="rogue"`` signs it
        with the untrusted CA."""
        now = _now()
        if expired:
            last_update, next_update = now - 30 * ONE_DAY, now - ONE_DAY
        else:
            last_update, next_update = now - ONE_DAY, now + 30 * ONE_DAY
        if issuer == "rogue":
            if self.rogue is None:
                self.rogue = _Authority("rogue CA")
            authority = self.rogue
        else:
            authority = self.authority
        target = pathlib.Path(path) if path else self.crl_path
        target.write_bytes(authority.crl(last_update, next_update)
                           .public_bytes(serialization.Encoding.PEM))
        return target

    def config(self, **extra):
        """The signing and validation keys of a fedmsg config for this PKI."""
        config = {
            "ssldir": str(self.ssldir),
            "ca_cert_location": str(self.ca_path),
            "crl_location": str(self.crl_path),
            "crypto_backend": "x509",
            "crypto_validate_backends": ["x509"],
        }
        config.update(extra)
        return config

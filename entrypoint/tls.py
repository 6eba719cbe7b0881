"""Check the certificate, key and CA with `cryptography` before anything is written or started."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from entrypoint.contract import CA_VAR, CERT_VAR, KEY_VAR, PASSPHRASE_VAR
from entrypoint.errors import ConfigError
from entrypoint.settings import EXPIRY_WARNING, Pems

MIN_RSA_BITS = 2048
# Far above real deployments (a leaf and 1 to 3 intermediates of 1 to 2 KiB each; 1 to 3 CAs) and
# below what breaks handshakes, measured with this image's OpenSSL 3.0: peers verify chains up to
# 100 intermediates deep, refuse a certificate message over 100 KiB (max_cert_list), and a server
# fails when the client's certificate is over about 64 KiB (its session ticket holds it).
MAX_CHAIN_CERTIFICATES = 10
MAX_AUTHORITIES = 32  # no TLS limit: it keeps a pasted public CA bundle (~140) out
MAX_CERTIFICATE_BYTES = 16 << 10  # DER
MAX_CHAIN_BYTES = 64 << 10  # DER, the certificate and its intermediates together
TLS_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
CLUSTER_PURPOSES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}
log = logging.getLogger("entrypoint")
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Material:
    """PEM files as distributed reads them: leaf first, the key in clear PKCS#8."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes  # the CA bundle; for a self-signed certificate, the certificate itself
    not_after: datetime  # the certificate's expiry (UTC)
    serial: int


def check(pems: Pems, now: datetime) -> Material:
    """Raise ConfigError unless the key matches the certificate, it is valid at `now` and the CA
    (or, with no CA, the certificate itself) issued it."""
    chain = _certificates(pems.cert_pem, CERT_VAR)
    _check_chain_size(chain)
    key = _private_key(pems.key_pem, pems.key_passphrase)
    leaf = chain[0]
    if not same_key(key, leaf):
        raise ConfigError(
            KEY_VAR,
            f"the key does not match the certificate in {CERT_VAR}",
            "pass the key that was generated together with that certificate",
        )
    _check_validity(leaf, now)
    _check_purposes(leaf)
    if pems.ca_pem is None:
        _check_self_signed(leaf)
        authorities = [leaf]
    else:
        authorities = _certificates(pems.ca_pem, CA_VAR)
        _check_count(authorities, CA_VAR, MAX_AUTHORITIES, "pass only the CA(s) of this cluster")
        _check_authorities(authorities)
        _check_issued(chain, authorities)
    return Material(
        cert_pem=_pem_of(chain),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ca_pem=_pem_of(authorities),
        not_after=leaf.not_valid_after_utc,
        serial=leaf.serial_number,
    )


def same_key(key: PrivateKeyTypes, certificate: x509.Certificate) -> bool:
    """Is `key` the private half of the certificate's public key?"""
    return key.public_key().public_bytes(*SPKI) == certificate.public_key().public_bytes(*SPKI)


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _certificates(data: bytes, name: str) -> list[x509.Certificate]:
    if b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" not in data:
        raise ConfigError(
            name, "holds a private key, not a certificate", f"put the key in {KEY_VAR} instead"
        )
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            name,
            "is not a PEM certificate (no complete, readable BEGIN CERTIFICATE block)",
            "pass the whole file, BEGIN and END lines included",
        ) from None
    for position, certificate in enumerate(certificates, 1):
        _check_key_strength(certificate.public_key(), name)
        size = len(certificate.public_bytes(serialization.Encoding.DER))
        if size > MAX_CERTIFICATE_BYTES:
            raise ConfigError(
                name,
                f"certificate {position} is over the limit of {MAX_CERTIFICATE_BYTES >> 10} KiB, "
                f"at {size} bytes (DER)",
                "issue it with fewer names and no large extensions (TLS peers refuse huge ones)",
            )
    return certificates


def _check_count(certificates: list[x509.Certificate], name: str, most: int, fix: str) -> None:
    if len(certificates) > most:
        raise ConfigError(
            name, f"holds {len(certificates)} certificates, over the limit of {most}", fix
        )


def _check_chain_size(chain: list[x509.Certificate]) -> None:
    _check_count(
        chain,
        CERT_VAR,
        MAX_CHAIN_CERTIFICATES,
        "pass the certificate and only the intermediates between it and the CA",
    )
    size = sum(len(cert.public_bytes(serialization.Encoding.DER)) for cert in chain)
    if size > MAX_CHAIN_BYTES:
        raise ConfigError(
            CERT_VAR,
            f"the certificate and its intermediates are over the limit of "
            f"{MAX_CHAIN_BYTES >> 10} KiB, at {size} bytes (DER)",
            "pass fewer or smaller intermediates (TLS peers refuse huge chains)",
        )


def _private_key(data: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    """The key, decrypted in memory when a passphrase is given (distributed cannot take one)."""
    if b"CERTIFICATE-----" in data and b"PRIVATE KEY-----" not in data:
        raise ConfigError(
            KEY_VAR, "holds a certificate, not a private key", f"put it in {CERT_VAR} instead"
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise ConfigError(
                KEY_VAR, "the key is encrypted", f"set {PASSPHRASE_VAR} (or its _FILE) as well"
            ) from None
        raise ConfigError(
            PASSPHRASE_VAR, "is set but the key is not encrypted", f"unset {PASSPHRASE_VAR}"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if passphrase is not None and b"ENCRYPTED" in data:
            raise ConfigError(
                PASSPHRASE_VAR,
                "does not decrypt the key",
                "pass the passphrase it was encrypted with",
            ) from None
        raise ConfigError(
            KEY_VAR,
            "is not a PEM private key (no complete, readable BEGIN PRIVATE KEY block)",
            "pass the whole key file, BEGIN and END lines included",
        ) from None
    if not isinstance(key, TLS_KEY_TYPES):
        raise ConfigError(
            KEY_VAR,
            f"a {type(key).__name__} cannot sign for TLS",
            "use an RSA, ECDSA or Ed25519 key",
        )
    _check_key_strength(key.public_key(), KEY_VAR)
    return key


def _check_key_strength(public_key: object, name: str) -> None:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        raise ConfigError(
            name,
            f"the RSA key has {public_key.key_size} bits, fewer than {MIN_RSA_BITS}",
            f"issue a new certificate with an RSA key of at least {MIN_RSA_BITS} bits or ECDSA",
        )


def _check_validity(leaf: x509.Certificate, now: datetime) -> None:
    if now < leaf.not_valid_before_utc:
        raise ConfigError(
            CERT_VAR,
            f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock or issue a certificate valid from now",
        )
    if now > leaf.not_valid_after_utc:
        raise ConfigError(
            CERT_VAR,
            f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            "issue a new certificate",
        )
    if leaf.not_valid_after_utc - now < EXPIRY_WARNING:
        expires = leaf.not_valid_after_utc
        log.warning(
            "%s: the certificate expires on %s UTC, in %d days: issue a new one soon",
            CERT_VAR, f"{expires:%Y-%m-%d %H:%M}", (expires - now).days,
        )  # fmt: skip


def _check_purposes(leaf: x509.Certificate) -> None:
    """The scheduler, nannies and workers serve the certificate and present it to each other: an
    extendedKeyUsage, where there is one, must allow both (a client's from `certs new` does not)."""
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    missing = [name for oid, name in CLUSTER_PURPOSES.items() if oid not in usages]
    if missing:
        raise ConfigError(
            CERT_VAR,
            f"its extendedKeyUsage lacks {' and '.join(missing)}, which the cluster needs",
            "pass the cluster's certificate (cluster.pem from certs new), not a client's",
        )


def _check_self_signed(leaf: x509.Certificate) -> None:
    try:
        leaf.verify_directly_issued_by(leaf)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            CA_VAR,
            f"is not set and the certificate in {CERT_VAR} is not self-signed",
            f"pass the CA certificate that issued it in {CA_VAR}",
        ) from None


def _check_authorities(authorities: list[x509.Certificate]) -> None:
    for authority in authorities:
        if not is_ca(authority):
            raise ConfigError(
                CA_VAR,
                f"{authority.subject.rfc4514_string()} is not a CA certificate (basicConstraints)",
                "pass the certificate of the CA that issued the cluster certificate",
            )


def _check_issued(chain: list[x509.Certificate], authorities: list[x509.Certificate]) -> None:
    """Walk from the leaf through the given intermediates up to one of the authorities."""
    current = chain[0]
    for _ in range(len(chain)):
        if any(_issued_by(current, authority) for authority in authorities):
            return
        parent = next((cert for cert in chain[1:] if _issued_by(current, cert)), None)
        if parent is None:
            break
        current = parent
    raise ConfigError(
        CERT_VAR,
        f"the certificate was not issued by the CA in {CA_VAR}",
        f"pass the CA that signed it in {CA_VAR} (or leave {CA_VAR} unset for a self-signed one)",
    )


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _pem_of(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)

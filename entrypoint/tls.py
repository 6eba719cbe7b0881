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

from entrypoint.contract import CA_VAR, CERT_VAR, CRL_VAR, KEY_VAR, PASSPHRASE_VAR
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
    crl_pem: bytes | None = None  # the CA's revocation list, when one is given
    crl_next_update: datetime | None = None  # when the CA promised a newer one (UTC)


def check(pems: Pems, now: datetime) -> Material:
    """Raise ConfigError unless the key matches the certificate, it is valid at `now` and the CA
    (or, with no CA, the certificate itself) issued it, every intermediate and CA is a CA valid at
    `now`, and the revocation list, if any, is the CA's, current, and does not revoke the
    certificate."""
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
    _check_intermediates(chain[1:], now)
    if pems.ca_pem is None:
        _check_self_signed(leaf)
        authorities = [leaf]
    else:
        authorities = _certificates(pems.ca_pem, CA_VAR)
        _check_count(authorities, CA_VAR, MAX_AUTHORITIES, "pass only the CA(s) of this cluster")
        _check_authorities(authorities, now)
        _check_issued(chain, authorities)
    crl = None if pems.crl_pem is None else _revocation_list(pems.crl_pem, authorities, leaf, now)
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
        crl_pem=None if crl is None else crl.public_bytes(serialization.Encoding.PEM),
        crl_next_update=None if crl is None else crl.next_update_utc,
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
        _check_readable(certificate, name, position)
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


# What `cryptography` raises for a certificate that loaded but whose parts it reads later (lazily):
# an extension given twice, a name or key of a kind it cannot read.
UNREADABLE = (x509.DuplicateExtension, x509.UnsupportedGeneralNameType, ValueError,
              UnsupportedAlgorithm)  # fmt: skip


def _check_readable(certificate: x509.Certificate, name: str, position: int) -> None:
    """Parse now what `cryptography` parses on first use (its extensions, its key), so that a
    malformed part is refused here in one line rather than raised later by whatever reads it."""
    try:
        certificate.extensions  # noqa: B018 (read for its error)
        certificate.public_key()
    except UNREADABLE as error:
        raise ConfigError(
            name,
            f"certificate {position} cannot be read: {unreadable(error)}",
            "issue it again with a standard tool (certs new, openssl)",
        ) from None


def unreadable(error: Exception) -> str:
    if isinstance(error, x509.DuplicateExtension):
        return f"the extension {error.oid.dotted_string} appears twice"
    return f"{type(error).__name__}: {str(error)[:80]}"


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


def _check_window(certificate: x509.Certificate, name: str, label: str, now: datetime) -> None:
    """`label` (which certificate of `name`) must be valid at `now`."""
    if now < certificate.not_valid_before_utc:
        raise ConfigError(
            name,
            f"{label} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock, or pass a CA valid from now",
        )
    if now > certificate.not_valid_after_utc:
        raise ConfigError(
            name,
            f"{label} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, so "
            "every certificate below it is refused",
            "make a new CA (certs new) and issue the cluster's certificates from it",
        )


def _check_intermediates(intermediates: list[x509.Certificate], now: datetime) -> None:
    """The certificates after the leaf in DASK_CLUSTER_CERT are the CAs between it and the root."""
    for position, certificate in enumerate(intermediates, 2):
        label = f"certificate {position} ({certificate.subject.rfc4514_string()[:60]})"
        if not is_ca(certificate):
            raise ConfigError(
                CERT_VAR,
                f"{label} is not a CA certificate (basicConstraints), so it cannot vouch for the "
                "one before it",
                "pass the certificate first, then only the intermediate CAs that issued it",
            )
        _check_window(certificate, CERT_VAR, label, now)


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


def _check_authorities(authorities: list[x509.Certificate], now: datetime) -> None:
    for authority in authorities:
        if not is_ca(authority):
            raise ConfigError(
                CA_VAR,
                f"{authority.subject.rfc4514_string()} is not a CA certificate (basicConstraints)",
                "pass the certificate of the CA that issued the cluster certificate",
            )
        _check_window(authority, CA_VAR, f"the CA {authority.subject.rfc4514_string()[:60]}", now)


def _revocation_list(
    data: bytes, authorities: list[x509.Certificate], leaf: x509.Certificate, now: datetime
) -> x509.CertificateRevocationList:
    """The CA's CRL: one that would fail every handshake (another CA's, out of date, revoking the
    cluster itself) is refused here rather than left to OpenSSL, which would refuse every peer."""
    crl = _parsed_crl(data)
    issuer = next((a for a in authorities if _signed_crl(crl, a)), None)
    if issuer is None:
        raise ConfigError(
            CRL_VAR,
            f"is not signed by the CA in {CA_VAR}" if authorities != [leaf]
            else f"is not signed by the self-signed certificate in {CERT_VAR}",
            "pass the crl.pem that certs revoke wrote beside this cluster's ca.pem",
        )  # fmt: skip
    if not _issued_by(leaf, issuer):
        raise ConfigError(
            CRL_VAR,
            "its CA did not sign the cluster's certificate itself (an intermediate did), so every "
            "connection between the cluster's processes would fail its revocation check",
            "issue the list from the CA that signed the cluster certificate",
        )
    _check_crl_dates(crl, now)
    if crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None:
        raise ConfigError(
            CRL_VAR,
            f"revokes the cluster's own certificate (serial {leaf.serial_number:x})",
            "renew the cluster certificate (certs renew) and give the new one with this list",
        )
    return crl


def _parsed_crl(data: bytes) -> x509.CertificateRevocationList:
    if b"BEGIN X509 CRL" not in data and b"-----BEGIN" in data:
        raise ConfigError(
            CRL_VAR, "holds another kind of PEM, not a CRL", "pass the crl.pem from certs revoke"
        )
    try:
        crl = x509.load_pem_x509_crl(data)
        crl.extensions  # noqa: B018 (parsed on first use: read now for its errors)
        for entry in crl:
            entry.extensions  # noqa: B018
    except UNREADABLE as error:
        raise ConfigError(
            CRL_VAR,
            f"is not a readable PEM CRL (BEGIN X509 CRL block): {unreadable(error)}",
            "pass the whole crl.pem that certs revoke wrote",
        ) from None
    return crl


def _signed_crl(crl: x509.CertificateRevocationList, authority: x509.Certificate) -> bool:
    if crl.issuer != authority.subject:
        return False
    try:
        return crl.is_signature_valid(authority.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def _check_crl_dates(crl: x509.CertificateRevocationList, now: datetime) -> None:
    if now < crl.last_update_utc:
        raise ConfigError(
            CRL_VAR,
            f"is not valid before {crl.last_update_utc:%Y-%m-%d %H:%M} UTC, so every handshake "
            "would fail until then",
            "check this machine's clock",
        )
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise ConfigError(
            CRL_VAR,
            f"its next update was due on {next_update:%Y-%m-%d %H:%M} UTC, so every handshake "
            "would fail",
            "issue a fresh one: certs revoke --certs DIR (with no name it only renews the list)",
        )
    if next_update is not None and next_update - now < EXPIRY_WARNING:
        from entrypoint.rotation import crl_line

        log.warning("%s", crl_line(next_update, now)[1])


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

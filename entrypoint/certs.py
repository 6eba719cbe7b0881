"""Throwaway certificates made with `cryptography`: a CA of its own for one cluster, the cluster's
certificate (server and client at once, as the workers need) and a client certificate.

`python -m entrypoint.certs DIR` writes a development set (`make certs`); tests issue theirs here.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def new_key(kind: str = "ec") -> CertificateIssuerPrivateKeyTypes:
    """ "ec" (P-256), "ed25519", or "rsa<bits>"."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa")))


def issue(
    common_name: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    days: float = 90,
    not_before: datetime | None = None,
    names: tuple[str, ...] = DEFAULT_NAMES,
) -> Issued:
    """A certificate for `common_name`, signed by `issuer` (self-signed when None)."""
    key = key or new_key()
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(names)), critical=False
        )
    if not ca:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    signer = issuer.key if issuer else key
    # Ed25519/Ed448 sign without a separate hash
    digest = (
        None
        if isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return Issued(builder.sign(signer, digest), key)


def _general_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def write_dev_set(directory: Path, days: float = 90) -> None:
    """ca.pem, cluster.pem + cluster-key.pem (for the container), client.pem + client-key.pem
    (for you); keys 0600. The CA's own key is not kept: nothing more can be issued from it."""
    ca = issue("dask-tls dev CA", ca=True, days=days)
    cluster = issue("dask-tls cluster", ca, days=days)
    client = issue("dask-tls client", ca, days=days)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data, mode in (
        ("ca.pem", ca.cert_pem, 0o644),
        ("cluster.pem", cluster.cert_pem, 0o644),
        ("cluster-key.pem", cluster.key_pem, 0o600),
        ("client.pem", client.cert_pem, 0o644),
        ("client-key.pem", client.key_pem, 0o600),
    ):
        path = directory / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "certs")
    write_dev_set(target)
    print(f"wrote a throwaway CA, cluster and client certificate to {target}/")

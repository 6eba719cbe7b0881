"""Throwaway certificates made with `cryptography`: a CA of its own for one cluster, the cluster's
certificate (server and client at once, as the workers need) and a client certificate.

`python -m entrypoint certs new|inspect` is the command line (see `cli`); tests issue theirs here.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from entrypoint.tls import is_ca, same_key

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
    extra: tuple[x509.ExtensionType, ...] = (),
) -> Issued:
    """A certificate for `common_name`, signed by `issuer` (self-signed when None), with the
    `extra` extensions (non-critical) added."""
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
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
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


@dataclass(frozen=True)
class ClusterSet:
    """What `certs new` issued; `written` lists every file, keys 0600."""

    ca: Issued
    cluster: Issued
    clients: dict[str, Issued]
    written: list[Path]


def new_cluster(
    directory: Path,
    names: tuple[str, ...] = DEFAULT_NAMES,
    clients: tuple[str, ...] = ("client",),
    kind: str = "ec",
    days: float = 365,
) -> ClusterSet:
    """A CA for this one cluster, the cluster's certificate (for `names`), one certificate per
    client, and the forms users paste: a base64 env file and the files for a mounted secret."""
    if reserved := {"ca", "cluster"} & set(clients):
        raise ValueError(f"client names {sorted(reserved)} are taken by the CA and the cluster")
    ca = issue(f"dask-tls CA {directory.resolve().name}", ca=True, key=new_key(kind), days=days)
    cluster = issue("dask-tls cluster", ca, key=new_key(kind), days=days, names=names)
    issued = {name: issue(name, ca, key=new_key(kind), days=days, names=()) for name in clients}
    files: dict[str, tuple[bytes, int]] = {
        "ca.pem": (ca.cert_pem, 0o644),
        "ca-key.pem": (ca.key_pem, 0o600),
        "cluster.pem": (cluster.cert_pem, 0o644),
        "cluster-key.pem": (cluster.key_pem, 0o600),
        "cluster.env": (env_file(cluster, ca), 0o600),
        "secrets/cert.pem": (cluster.cert_pem, 0o600),
        "secrets/key.pem": (cluster.key_pem, 0o600),
        "secrets/ca.pem": (ca.cert_pem, 0o600),
    }
    for name, client in issued.items():
        files[f"{name}.pem"] = (client.cert_pem, 0o644)
        files[f"{name}-key.pem"] = (client.key_pem, 0o600)
        files[f"{name}.p12"] = (browser_bundle(name, client, ca), 0o600)
    return ClusterSet(
        ca, cluster, issued, [write_file(directory / n, *f) for n, f in files.items()]
    )


def env_file(cluster: Issued, ca: Issued) -> bytes:
    """Single-line base64 PEMs: the one form `docker run --env-file` and gcloud carry intact."""
    lines = [
        f"{var}={base64.b64encode(pem).decode()}"
        for var, pem in (
            ("DASK_CLUSTER_CERT", cluster.cert_pem),
            ("DASK_CLUSTER_KEY", cluster.key_pem),
            ("DASK_CLUSTER_CA", ca.cert_pem),
        )
    ]
    return ("\n".join(lines) + "\n").encode()


def browser_bundle(name: str, client: Issued, ca: Issued) -> bytes:
    """PKCS#12 with the client's key and certificate and the CA, for a browser; no password (the
    file is 0600), since browsers that ask accept an empty one."""
    key = cast(pkcs12.PKCS12PrivateKeyTypes, client.key)  # new_key makes RSA, EC or Ed25519
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, client.cert, [ca.cert], serialization.NoEncryption()
    )


def write_file(path: Path, data: bytes, mode: int) -> Path:
    """Write `path` afresh with `mode` from the start (never a moment world-readable)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return path


def describe(path: Path) -> list[str]:
    """One line per PEM block in `path`: what it is, who issued it, when it expires."""
    data = path.read_bytes()
    lines = [f"{path}: {_describe_certificate(c)}" for c in _certificates_in(data)]
    if b"PRIVATE KEY-----" in data:
        lines.append(f"{path}: {_describe_key(data)}")
    return lines or [f"{path}: no PEM certificate or private key"]


def key_matches(key_path: Path, cert_path: Path) -> bool:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return same_key(key, x509.load_pem_x509_certificates(cert_path.read_bytes())[0])


def _certificates_in(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _describe_certificate(cert: x509.Certificate) -> str:
    left = (cert.not_valid_after_utc - datetime.now(UTC)).days
    return (
        f"{'CA ' if is_ca(cert) else ''}certificate {cert.subject.rfc4514_string()}, "
        f"issued by {cert.issuer.rfc4514_string()}, {type(cert.public_key()).__name__}, "
        f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d} "
        f"({'expired' if left < 0 else f'{left} days left'})"
    )


def _describe_key(data: bytes) -> str:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return "encrypted private key (needs its passphrase)"
    except ValueError:
        return "unreadable private key"
    size = getattr(key, "key_size", None)
    return f"private key, {type(key).__name__}{f' {size} bits' if size else ''}"


def write_dev_set(directory: Path, days: float = 90) -> ClusterSet:
    """The throwaway set `make certs` makes for localhost."""
    return new_cluster(directory, days=days)

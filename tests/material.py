"""Certificate sets issued at test time, and the environment that hands them to the entrypoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from distributed.security import Security

from entrypoint.contract import CA_VAR, CERT_VAR, KEY_VAR
from entrypoint.tools.certs import Issued, blogs_certificate, issue

# an OID of our own under 2.25 (a UUID, X.667): an extension no TLS stack knows, only size
PADDING_OID = x509.ObjectIdentifier("2.25.27830714112196959896331082400113807990")


@dataclass(frozen=True)
class ClusterMaterial:
    ca: Issued
    cluster: Issued
    client: Issued
    intruder: Issued  # a client certificate from another CA
    seed: Issued  # the blog's single self-signed certificate: CA, server and client at once

    @classmethod
    def issue(cls) -> ClusterMaterial:
        ca = issue("test CA", ca=True)
        other_ca = issue("another CA", ca=True)
        return cls(
            ca=ca,
            cluster=issue("cluster", ca),
            client=issue("client", ca, client_only=True, names=()),
            intruder=issue("intruder", other_ca),
            seed=blogs_certificate("seed"),
        )

    def ca_env(self) -> dict[str, str]:
        return {
            CERT_VAR: self.cluster.cert_pem.decode(),
            KEY_VAR: self.cluster.key_pem.decode(),
            CA_VAR: self.ca.cert_pem.decode(),
        }

    def seed_env(self) -> dict[str, str]:
        return {
            CERT_VAR: self.seed.cert_pem.decode(),
            KEY_VAR: self.seed.key_pem.decode(),
        }

    def secret_fragments(self) -> list[str]:
        """Text that must never appear in any output: PEM armour and pieces of every key's body."""
        fragments = ["-----BEGIN"]
        for issued in (self.cluster, self.seed, self.client):
            body = "".join(issued.key_pem.decode().splitlines()[1:-1])
            fragments += [body[i : i + 24] for i in range(0, len(body) - 24, 48)]
        return fragments


def write_pem_files(directory: Path, **pems: bytes) -> dict[str, str]:
    """Write each PEM as directory/<name>.pem (0600); return name -> path."""
    paths = {}
    for name, data in pems.items():
        path = directory / f"{name}.pem"
        path.write_bytes(data)
        path.chmod(0o600)
        paths[name] = str(path)
    return paths


def client_security(pems: dict[str, str], cert: str = "client") -> Security:
    return Security(
        tls_ca_file=pems["ca"],
        tls_client_cert=pems[cert],
        tls_client_key=pems[f"{cert}_key"],
        require_encryption=True,
    )


def padding(size: int) -> tuple[x509.ExtensionType, ...]:
    """A non-critical extension that makes a certificate `size` bytes bigger (none for 0)."""
    if size <= 0:
        return ()
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    header = bytes([size]) if size < 0x80 else bytes([0x80 | len(length)]) + length
    return (x509.UnrecognizedExtension(PADDING_OID, b"\x04" + header + b"\0" * size),)


def der_size(issued: Issued) -> int:
    return len(issued.cert.public_bytes(serialization.Encoding.DER))


def chain_of(ca: Issued, paddings: Sequence[int]) -> list[Issued]:
    """A cluster certificate issued through len(paddings) - 1 intermediates below `ca`, leaf
    first; certificate i padded by paddings[i] bytes."""
    parent, intermediates = ca, []
    for depth, size in enumerate(reversed(paddings[1:])):
        parent = issue(f"intermediate {depth}", parent, ca=True, names=(), extra=padding(size))
        intermediates.append(parent)
    leaf = issue("cluster", parent, extra=padding(paddings[0]))
    return [leaf, *reversed(intermediates)]


def pem_of(issued: Sequence[Issued]) -> str:
    return "".join(each.cert_pem.decode() for each in issued)

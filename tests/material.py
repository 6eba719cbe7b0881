"""Certificate sets issued at test time, and the environment that hands them to the entrypoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distributed.security import Security

from entrypoint.certs import Issued, issue, new_key


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
            client=issue("client", ca),
            intruder=issue("intruder", other_ca),
            seed=issue("seed", ca=True, key=new_key("rsa2048"), names=()),
        )

    def ca_env(self) -> dict[str, str]:
        return {
            "DASK_CLUSTER_CERT": self.cluster.cert_pem.decode(),
            "DASK_CLUSTER_KEY": self.cluster.key_pem.decode(),
            "DASK_CLUSTER_CA": self.ca.cert_pem.decode(),
        }

    def seed_env(self) -> dict[str, str]:
        return {
            "DASK_CLUSTER_CERT": self.seed.cert_pem.decode(),
            "DASK_CLUSTER_KEY": self.seed.key_pem.decode(),
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

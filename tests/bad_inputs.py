"""Bad inputs, each with the words its one-line refusal must hold. Shared by the process tests
(every row) and the container tests (the rows that need no file)."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from entrypoint.contract import CA_VAR, CERT_VAR, KEY_VAR, PASSPHRASE_VAR
from entrypoint.tools.certs import Issued, issue, new_key
from tests.material import ClusterMaterial, chain_of, padding, pem_of

Env = dict[str, str]
# a variable's text; or for NAME_FILE, the file's content, or what makes the file at a path
Value = str | bytes | Callable[[Path], None]
CERT, KEY, CA = CERT_VAR, KEY_VAR, CA_VAR
PASSPHRASE = PASSPHRASE_VAR


@dataclass(frozen=True)
class BadInput:
    id: str
    env: Callable[[ClusterMaterial, Path], Env]  # (material, a scratch directory) -> environment
    says: str  # "{scratch}" stands for the scratch directory
    needs_files: bool = False

    def says_for(self, scratch: Path) -> str:
        return self.says.replace("{scratch}", str(scratch))


def ca_env(material: ClusterMaterial) -> Env:
    return material.ca_env()


def changed(**changes: str | None) -> Callable[[ClusterMaterial, Path], Env]:
    """The good CA environment with some variables replaced (None: removed)."""

    def env(material: ClusterMaterial, scratch: Path) -> Env:
        merged: dict[str, str | None] = {**material.ca_env(), **changes}
        return {k: v for k, v in merged.items() if v is not None}

    return env


def derived(make: Callable[[ClusterMaterial], Env]) -> Callable[[ClusterMaterial, Path], Env]:
    """The good CA environment updated with what `make` derives from the material."""
    return lambda material, scratch: {**material.ca_env(), **make(material)}


def with_files(
    make: Callable[[ClusterMaterial], dict[str, Value]],
) -> Callable[[ClusterMaterial, Path], Env]:
    """The good CA environment with `make`'s variables: text as it is; a file (its bytes, or what
    makes it) at scratch/<name>.input, which NAME_FILE names instead of NAME."""

    def env(material: ClusterMaterial, scratch: Path) -> Env:
        result = material.ca_env()
        for name, value in make(material).items():
            if isinstance(value, str):
                result[name] = value
                continue
            path = scratch / f"{name.lower()}.input"
            if isinstance(value, bytes):
                path.write_bytes(value)
            else:
                value(path)
            result.pop(name, None)
            result[f"{name}_FILE"] = str(path)
        return result

    return env


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))  # the socket file stays after close


def symlink_to_fifo(path: Path) -> None:
    os.mkfifo(path.with_suffix(".fifo"))
    path.symlink_to(path.with_suffix(".fifo"))


def issued_as_cluster(chain: list[Issued]) -> dict[str, Value]:
    """The chain in a DASK_CLUSTER_CERT_FILE (too large for a variable), its leaf's key."""
    return {CERT: pem_of(chain).encode(), KEY: chain[0].key_pem.decode()}


def self_signed_pair(issued: Callable[[], Issued]) -> Callable[[ClusterMaterial, Path], Env]:
    def env(material: ClusterMaterial, scratch: Path) -> Env:
        made = issued()
        return {CERT: made.cert_pem.decode(), KEY: made.key_pem.decode()}

    return env


def encrypted_key(material: ClusterMaterial) -> str:
    encryption = serialization.BestAvailableEncryption(b"right passphrase")
    return material.cluster.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def now() -> datetime:
    return datetime.now(UTC)


BAD_INPUTS = [
    BadInput("cert-unset", changed(DASK_CLUSTER_CERT=None), f"{CERT}: is not set"),
    BadInput("key-unset", changed(DASK_CLUSTER_KEY=None), f"{KEY}: is not set"),
    BadInput("cert-empty", changed(DASK_CLUSTER_CERT=""), f"{CERT}: is empty"),
    BadInput("key-blank", changed(DASK_CLUSTER_KEY=" \n "), f"{KEY}: is empty"),
    BadInput("ca-empty", changed(DASK_CLUSTER_CA=""), f"{CA}: is empty"),
    BadInput(
        "cert-garbage",
        changed(DASK_CLUSTER_CERT="hello world"),
        f"{CERT}: is neither PEM text nor base64",
    ),
    BadInput(
        "ca-garbage", changed(DASK_CLUSTER_CA="not a ca"), f"{CA}: is neither PEM text nor base64"
    ),
    BadInput(
        "cert-base64-not-pem",
        changed(DASK_CLUSTER_CERT=base64.b64encode(b"just some bytes").decode()),
        f"{CERT}: is base64, but not of a PEM",
    ),
    BadInput(
        "cert-truncated",
        derived(lambda m: {CERT: m.cluster.cert_pem.decode()[:200]}),
        f"{CERT}: is not a PEM certificate",
    ),
    BadInput(
        "key-truncated",
        derived(lambda m: {KEY: m.cluster.key_pem.decode()[:90]}),
        f"{KEY}: is not a PEM private key",
    ),
    BadInput(
        "cert-holds-key",
        derived(lambda m: {CERT: m.cluster.key_pem.decode()}),
        f"{CERT}: holds a private key",
    ),
    BadInput(
        "key-holds-cert",
        derived(lambda m: {KEY: m.cluster.cert_pem.decode()}),
        f"{KEY}: holds a certificate",
    ),
    BadInput(
        "key-of-another-cert",
        derived(lambda m: {KEY: m.client.key_pem.decode()}),
        f"{KEY}: the key does not match the certificate",
    ),
    BadInput(
        "expired",
        self_signed_pair(
            lambda: issue("old", ca=True, not_before=now() - timedelta(days=9), days=2)
        ),
        f"{CERT}: the certificate expired on",
    ),
    BadInput(
        "not-yet-valid",
        self_signed_pair(lambda: issue("new", ca=True, not_before=now() + timedelta(days=1))),
        f"{CERT}: the certificate is not valid before",
    ),
    BadInput(
        "cert-of-a-client",
        derived(lambda m: {CERT: m.client.cert_pem.decode(), KEY: m.client.key_pem.decode()}),
        f"{CERT}: its extendedKeyUsage lacks serverAuth, which the cluster needs",
    ),
    BadInput(
        "cert-of-another-ca",
        derived(lambda m: {CERT: m.intruder.cert_pem.decode(), KEY: m.intruder.key_pem.decode()}),
        f"{CERT}: the certificate was not issued by the CA",
    ),
    BadInput(
        "ca-not-a-ca",
        derived(lambda m: {CA: m.client.cert_pem.decode()}),
        f"{CA}: CN=client is not a CA",
    ),
    BadInput("ca-missing", changed(DASK_CLUSTER_CA=None), f"{CA}: is not set and the certificate"),
    BadInput(
        "rsa-1024",
        self_signed_pair(lambda: issue("weak", ca=True, key=new_key("rsa1024"))),
        f"{CERT}: the RSA key has 1024 bits",
    ),
    BadInput(
        "key-encrypted", derived(lambda m: {KEY: encrypted_key(m)}), f"{KEY}: the key is encrypted"
    ),
    BadInput(
        "passphrase-wrong",
        derived(lambda m: {KEY: encrypted_key(m), PASSPHRASE: "wrong"}),
        f"{PASSPHRASE}: does not decrypt the key",
    ),
    BadInput(
        "passphrase-for-clear-key",
        changed(DASK_CLUSTER_KEY_PASSPHRASE="pointless"),
        f"{PASSPHRASE}: is set but the key is not encrypted",
    ),
    BadInput(
        "cert-and-cert-file",
        derived(lambda m: {"DASK_CLUSTER_CERT_FILE": "/run/secrets/cert"}),
        f"{CERT}: is set and so is DASK_CLUSTER_CERT_FILE",
    ),
    BadInput("cert-non-utf8", changed(DASK_CLUSTER_CERT="caf\udce9"), f"{CERT}: is not UTF-8 text"),
    BadInput(
        "key-file-missing",
        lambda m, scratch: {
            **{k: v for k, v in ca_env(m).items() if k != KEY},
            "DASK_CLUSTER_KEY_FILE": "/run/secrets/none",
        },
        "DASK_CLUSTER_KEY_FILE: cannot read /run/secrets/none: No such file or directory",
    ),
    BadInput(
        "cert-file-huge",
        with_files(lambda m: {CERT: b"A" * (2 << 20)}),
        "DASK_CLUSTER_CERT_FILE: is over 1024 KiB",
        needs_files=True,
    ),
    BadInput(
        "ca-file-not-utf8",
        with_files(lambda m: {CA: b"\xff\xfe\x00garbage"}),
        "DASK_CLUSTER_CA_FILE: {scratch}/dask_cluster_ca.input is not UTF-8 text",
        needs_files=True,
    ),
    BadInput(
        "cert-file-empty",
        with_files(lambda m: {CERT: b""}),
        "DASK_CLUSTER_CERT_FILE: {scratch}/dask_cluster_cert.input is empty",
        needs_files=True,
    ),
    BadInput(
        "passphrase-file-blank",
        with_files(lambda m: {KEY: encrypted_key(m), PASSPHRASE: b"\n"}),
        "DASK_CLUSTER_KEY_PASSPHRASE_FILE: {scratch}/dask_cluster_key_passphrase.input is empty",
        needs_files=True,
    ),
    BadInput(
        "key-file-fifo",
        with_files(lambda m: {KEY: os.mkfifo}),
        "DASK_CLUSTER_KEY_FILE: {scratch}/dask_cluster_key.input is a FIFO, not a regular file",
        needs_files=True,
    ),
    BadInput(
        "key-file-symlink-to-fifo",
        with_files(lambda m: {KEY: symlink_to_fifo}),
        "DASK_CLUSTER_KEY_FILE: {scratch}/dask_cluster_key.input is a FIFO, not a regular file",
        needs_files=True,
    ),
    BadInput(
        "passphrase-file-fifo",
        with_files(lambda m: {KEY: encrypted_key(m), PASSPHRASE: os.mkfifo}),
        "DASK_CLUSTER_KEY_PASSPHRASE_FILE: {scratch}/dask_cluster_key_passphrase.input is a FIFO",
        needs_files=True,
    ),
    BadInput(
        "cert-file-socket",
        with_files(lambda m: {CERT: unix_socket}),
        "DASK_CLUSTER_CERT_FILE: {scratch}/dask_cluster_cert.input is a socket, not a regular",
        needs_files=True,
    ),
    BadInput(
        "ca-file-device",
        changed(DASK_CLUSTER_CA=None, DASK_CLUSTER_CA_FILE="/dev/null"),
        "DASK_CLUSTER_CA_FILE: /dev/null is a character device, not a regular file",
    ),
    BadInput(
        "chain-of-1000",
        with_files(lambda m: issued_as_cluster(chain_of(m.ca, [0] * 1000))),
        f"{CERT}: holds 1000 certificates, over the limit of 10",
        needs_files=True,
    ),
    BadInput(
        "san-of-5000-names",
        with_files(
            lambda m: issued_as_cluster(
                [issue("cluster", m.ca, names=tuple(f"w{i}.dask.example.com" for i in range(5000)))]
            )
        ),
        f"{CERT}: certificate 1 is over the limit of 16 KiB",
        needs_files=True,
    ),
    BadInput(
        "extension-of-100-kb",
        with_files(lambda m: issued_as_cluster([issue("cluster", m.ca, extra=padding(100_000))])),
        f"{CERT}: certificate 1 is over the limit of 16 KiB",
        needs_files=True,
    ),
    BadInput(
        "chain-over-64-kib",
        derived(
            lambda m: {
                CERT: pem_of(chain := chain_of(m.ca, [14_000] * 5)),
                KEY: chain[0].key_pem.decode(),
            }
        ),
        f"{CERT}: the certificate and its intermediates are over the limit of 64 KiB",
    ),
    BadInput(
        "ca-certificate-over-16-kib",
        derived(lambda m: {CA: issue("CA", ca=True, extra=padding(20_000)).cert_pem.decode()}),
        f"{CA}: certificate 1 is over the limit of 16 KiB",
    ),
    BadInput(
        "ca-bundle-of-33",
        derived(lambda m: {CA: pem_of([m.ca, *(issue(f"CA {i}", ca=True) for i in range(32))])}),
        f"{CA}: holds 33 certificates, over the limit of 32",
    ),
    BadInput("workers-zero", changed(NUM_WORKERS="0"), "NUM_WORKERS: 0 is out of range"),
    BadInput("workers-huge", changed(NUM_WORKERS="100000"), "NUM_WORKERS: 100000 is out of range"),
    BadInput(
        "workers-word", changed(NUM_WORKERS="four"), "NUM_WORKERS: 'four' is not a whole number"
    ),
    BadInput(
        "threads-negative",
        changed(THREADS_PER_WORKER="-1"),
        "THREADS_PER_WORKER: '-1' is not a whole",
    ),
    BadInput(
        "threads-fraction",
        changed(THREADS_PER_WORKER="1.5"),
        "THREADS_PER_WORKER: '1.5' is not a whole",
    ),
    BadInput(
        "memory-words",
        changed(MEMORY_PER_WORKER="plenty"),
        "MEMORY_PER_WORKER: 'plenty' is not a size",
    ),
    BadInput(
        "memory-infinite",
        changed(MEMORY_PER_WORKER="1e309"),
        "MEMORY_PER_WORKER: '1e309' is not a size",
    ),
    BadInput("memory-zero", changed(MEMORY_PER_WORKER="0"), "MEMORY_PER_WORKER: '0' is below"),
    BadInput(
        "memory-negative", changed(MEMORY_PER_WORKER="-4"), "MEMORY_PER_WORKER: '-4' is below"
    ),
    BadInput(
        "memory-over-the-limit",
        changed(NUM_WORKERS="2", MEMORY_PER_WORKER="100000"),
        "MEMORY_PER_WORKER: 2 workers x 90.95 TiB is more than the container's",
    ),
    BadInput(
        "dashboard-protocol",
        changed(DASHBOARD_PROTOCOL="ftp"),
        "DASHBOARD_PROTOCOL: 'ftp' is not https or http",
    ),
    BadInput(
        "http-client-cert",
        changed(HTTP_CLIENT_CERT="maybe"),
        "HTTP_CLIENT_CERT: 'maybe' is not required or none",
    ),
    BadInput(
        "tls-floor-below-1.2",
        changed(DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION="1.1"),
        "DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION: '1.1' is not 1.2 or 1.3",
    ),
    *(
        BadInput(
            f"overrides-{name.lower()}",
            changed(**{name: value}),
            f"{name}: would set {key}, which this image fixes",
        )
        for name, value, key in (
            (
                "DASK_distributed__scheduler__dashboard__tls__cert",
                "",
                "distributed.scheduler.dashboard.tls.cert",
            ),
            (
                "DASK_Distributed__Comm__Require-Encryption",
                "False",
                "distributed.comm.require-encryption",
            ),
            (
                "DASK_distributed__comm__tls__ca_file",
                "/tmp/other.pem",
                "distributed.comm.tls.ca-file",
            ),
            ("DASK_DISTRIBUTED__COMM__TLS", "{}", "distributed.comm.tls.ca-file"),
            ("DASK_INTERNAL_INHERIT_CONFIG", "e30=", "the whole configuration"),
        )
    ),
    BadInput(
        "scratch-missing",
        changed(DASK_TEMPORARY_DIRECTORY="/nonexistent/scratch"),
        "DASK_TEMPORARY_DIRECTORY: the workers' scratch space /nonexistent/scratch is not writable",
    ),
]
BY_ID = {bad.id: bad for bad in BAD_INPUTS}
assert len(BY_ID) == len(BAD_INPUTS)

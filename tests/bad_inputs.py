"""The one table of refusals: bad inputs, each with the kind of mistake it is and the words its
one-line refusal starts with. tests/test_start.py refuses every row in-process; the entrypoint as a
process (tests/test_entrypoint_process.py) runs the first row of each kind; the container layer
(tests/test_configuration.py) a sample of its own."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from entrypoint.contract import (
    CA_VAR,
    CERT_VAR,
    CRL_VAR,
    DASHBOARD_VAR,
    DRAIN_VAR,
    HTTP_CLIENT_CERT_VAR,
    KEY_VAR,
    MEMORY_VAR,
    PASSPHRASE_VAR,
    ROLE_VAR,
    SCHEDULER_ADDRESS_VAR,
    SCRATCH_VAR,
    SECRET_PREFIX,
    THREADS_VAR,
    WORKERS_VAR,
    file_var,
)
from entrypoint.tools.certs import Issued, issue, new_key
from tests.material import PADDING_OID, ClusterMaterial, chain_of, padding, pem_of

Env = dict[str, str]
MakeEnv = Callable[[ClusterMaterial, Path], Env]  # (material, a scratch directory) -> environment
# a variable's text; or for NAME_FILE, the file's content, or what makes the file at a path
Value = str | bytes | Callable[[Path], None]
TLS_FLOOR_VAR = "DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION"  # dask's own spelling, as users type it


@dataclass(frozen=True)
class BadInput:
    id: str
    kind: str  # the kind of mistake; the process layer runs the first row of each
    env: MakeEnv
    says: str  # what the refusal starts with; "{scratch}" stands for the scratch directory

    def says_for(self, scratch: Path) -> str:
        return self.says.replace("{scratch}", str(scratch))


def changed(changes: Mapping[str, str | None]) -> MakeEnv:
    """The good CA environment with some variables replaced (None: removed)."""

    def env(material: ClusterMaterial, scratch: Path) -> Env:
        merged: dict[str, str | None] = {**material.ca_env(), **changes}
        return {k: v for k, v in merged.items() if v is not None}

    return env


def derived(make: Callable[[ClusterMaterial], Env]) -> MakeEnv:
    """The good CA environment updated with what `make` derives from the material."""
    return lambda material, scratch: {**material.ca_env(), **make(material)}


def with_files(make: Callable[[ClusterMaterial], dict[str, Value]]) -> MakeEnv:
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
            result[file_var(name)] = str(path)
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
    return {CERT_VAR: pem_of(chain).encode(), KEY_VAR: chain[0].key_pem.decode()}


def self_signed_pair(issued: Callable[[], Issued]) -> MakeEnv:
    def env(material: ClusterMaterial, scratch: Path) -> Env:
        made = issued()
        return {CERT_VAR: made.cert_pem.decode(), KEY_VAR: made.key_pem.decode()}

    return env


def encrypted_key(material: ClusterMaterial) -> str:
    encryption = serialization.BestAvailableEncryption(b"right passphrase")
    return material.cluster.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def now() -> datetime:
    return datetime.now(UTC)


def ago(days: float) -> datetime:
    return now() - timedelta(days=days)


def with_duplicate_extension(issued: Issued) -> str:
    """The certificate with one extension twice: it loads, and `cryptography` raises
    DuplicateExtension when its extensions are first read. Made by issuing it with two extensions
    whose OIDs differ in their last byte, then giving the second the first's OID (the signature no
    longer matches; nothing reads it before the extensions)."""
    first, second = PADDING_OID, x509.ObjectIdentifier(PADDING_OID.dotted_string[:-1] + "9")
    marked = issue("cluster", issued, extra=tuple(
        x509.UnrecognizedExtension(oid, b"\x05\x00") for oid in (first, second)))  # fmt: skip
    der = marked.cert.public_bytes(serialization.Encoding.DER)
    first_der, second_der = (_oid_der(oid) for oid in (first, second))
    assert der.count(second_der) == 1
    broken = x509.load_der_x509_certificate(der.replace(second_der, first_der))
    return broken.public_bytes(serialization.Encoding.PEM).decode()


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    first, second, *rest = (int(part) for part in oid.dotted_string.split("."))
    body = b""
    for number in [40 * first + second, *rest]:
        chunk = [number & 0x7F]
        while number := number >> 7:
            chunk.insert(0, 0x80 | (number & 0x7F))
        body += bytes(chunk)
    return bytes([0x06, len(body)]) + body


def crl(
    issuer: Issued, serials: tuple[int, ...] = (), last: datetime | None = None,
    next_update: datetime | None = None,
) -> str:  # fmt: skip
    """A revocation list signed by `issuer`."""
    last = last or now() - timedelta(minutes=5)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(last)
        .next_update(next_update or last + timedelta(days=90))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    return (
        builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    )


def expired_ca_pair(material: ClusterMaterial) -> Env:
    """A valid certificate whose CA expired yesterday."""
    old_ca = issue("old CA", ca=True, not_before=ago(100), days=99)
    leaf = issue("cluster", old_ca, not_before=ago(1) - timedelta(hours=1))
    return {CERT_VAR: leaf.cert_pem.decode(), KEY_VAR: leaf.key_pem.decode(),
            CA_VAR: old_ca.cert_pem.decode()}  # fmt: skip


def through(intermediate: Callable[[Issued], Issued]) -> Callable[[ClusterMaterial], Env]:
    """The cluster certificate issued by `intermediate`(the CA), passed after it in the chain."""

    def make(material: ClusterMaterial) -> Env:
        middle = intermediate(material.ca)
        leaf = issue("cluster", middle, not_before=ago(1))
        return {CERT_VAR: pem_of([leaf, middle]), KEY_VAR: leaf.key_pem.decode()}

    return make


def leaks(output: str, material: ClusterMaterial, env: Mapping[str, str]) -> list[str]:
    """The secret text in `output`: PEM armour, pieces of the material's keys, or a piece of any
    secret variable's value that the row made up."""
    secrets = [
        value
        for name, value in env.items()
        if name.startswith(SECRET_PREFIX) and not name.endswith("_FILE") and len(value) > 40
    ]
    fragments = [*material.secret_fragments(), *(value[20:40] for value in secrets)]
    return [fragment for fragment in fragments if fragment in output]


BAD_INPUTS = [
    BadInput("cert-unset", "missing", changed({CERT_VAR: None}), f"{CERT_VAR}: is not set"),
    BadInput("key-unset", "missing", changed({KEY_VAR: None}), f"{KEY_VAR}: is not set"),
    BadInput("cert-empty", "missing", changed({CERT_VAR: ""}), f"{CERT_VAR}: is empty"),
    BadInput("key-blank", "missing", changed({KEY_VAR: " \n "}), f"{KEY_VAR}: is empty"),
    BadInput("ca-empty", "missing", changed({CA_VAR: ""}), f"{CA_VAR}: is empty"),
    BadInput(
        "cert-garbage",
        "not a PEM",
        changed({CERT_VAR: "hello world"}),
        f"{CERT_VAR}: is neither PEM text nor base64",
    ),
    BadInput(
        "ca-garbage",
        "not a PEM",
        changed({CA_VAR: "not a ca"}),
        f"{CA_VAR}: is neither PEM text nor base64",
    ),
    BadInput(
        "cert-base64-not-pem",
        "not a PEM",
        changed({CERT_VAR: base64.b64encode(b"just some bytes").decode()}),
        f"{CERT_VAR}: is base64, but not of a PEM",
    ),
    BadInput(
        "cert-truncated",
        "not a PEM",
        derived(lambda m: {CERT_VAR: m.cluster.cert_pem.decode()[:200]}),
        f"{CERT_VAR}: is not a PEM certificate",
    ),
    BadInput(
        "key-truncated",
        "not a PEM",
        derived(lambda m: {KEY_VAR: m.cluster.key_pem.decode()[:90]}),
        f"{KEY_VAR}: is not a PEM private key",
    ),
    # the first of its kind: a variable's bytes that are not UTF-8 reach a process through
    # os.environ's surrogate escapes, a path only the process layer takes
    BadInput(
        "cert-non-utf8", "not text", changed({CERT_VAR: "caf\udce9"}), f"{CERT_VAR}: is not UTF-8"
    ),
    BadInput(
        "ca-file-not-utf8",
        "not text",
        with_files(lambda m: {CA_VAR: b"\xff\xfe\x00garbage"}),
        f"{file_var(CA_VAR)}: {{scratch}}/dask_cluster_ca.input is not UTF-8 text",
    ),
    BadInput(
        "cert-holds-key",
        "mixed up",
        derived(lambda m: {CERT_VAR: m.cluster.key_pem.decode()}),
        f"{CERT_VAR}: holds a private key",
    ),
    BadInput(
        "key-holds-cert",
        "mixed up",
        derived(lambda m: {KEY_VAR: m.cluster.cert_pem.decode()}),
        f"{KEY_VAR}: holds a certificate",
    ),
    BadInput(
        "key-of-another-cert",
        "mixed up",
        derived(lambda m: {KEY_VAR: m.client.key_pem.decode()}),
        f"{KEY_VAR}: the key does not match the certificate",
    ),
    BadInput(
        "expired",
        "validity",
        self_signed_pair(
            lambda: issue("old", ca=True, not_before=now() - timedelta(days=9), days=2)
        ),
        f"{CERT_VAR}: the certificate expired on",
    ),
    BadInput(
        "not-yet-valid",
        "validity",
        self_signed_pair(lambda: issue("new", ca=True, not_before=now() + timedelta(days=1))),
        f"{CERT_VAR}: the certificate is not valid before",
    ),
    BadInput(
        "cert-of-another-ca",
        "trust",
        derived(
            lambda m: {CERT_VAR: m.intruder.cert_pem.decode(), KEY_VAR: m.intruder.key_pem.decode()}
        ),
        f"{CERT_VAR}: the certificate was not issued by the CA",
    ),
    BadInput(
        "cert-of-a-client",
        "trust",
        derived(
            lambda m: {CERT_VAR: m.client.cert_pem.decode(), KEY_VAR: m.client.key_pem.decode()}
        ),
        f"{CERT_VAR}: its extendedKeyUsage lacks serverAuth, which the cluster needs",
    ),
    BadInput(
        "ca-not-a-ca",
        "trust",
        derived(lambda m: {CA_VAR: m.client.cert_pem.decode()}),
        f"{CA_VAR}: CN=client is not a CA",
    ),
    BadInput(
        "ca-missing", "trust", changed({CA_VAR: None}), f"{CA_VAR}: is not set and the certificate"
    ),
    BadInput(
        "rsa-1024",
        "weak key",
        self_signed_pair(lambda: issue("weak", ca=True, key=new_key("rsa1024"))),
        f"{CERT_VAR}: the RSA key has 1024 bits",
    ),
    BadInput(
        "passphrase-wrong",
        "passphrase",
        derived(lambda m: {KEY_VAR: encrypted_key(m), PASSPHRASE_VAR: "wrong"}),
        f"{PASSPHRASE_VAR}: does not decrypt the key",
    ),
    BadInput(
        "key-encrypted",
        "passphrase",
        derived(lambda m: {KEY_VAR: encrypted_key(m)}),
        f"{KEY_VAR}: the key is encrypted",
    ),
    BadInput(
        "passphrase-for-clear-key",
        "passphrase",
        changed({PASSPHRASE_VAR: "pointless"}),
        f"{PASSPHRASE_VAR}: is set but the key is not encrypted",
    ),
    BadInput(
        "cert-and-cert-file",
        "two sources",
        derived(lambda m: {file_var(CERT_VAR): "/run/secrets/cert"}),
        f"{CERT_VAR}: is set and so is {file_var(CERT_VAR)}",
    ),
    BadInput(
        "key-file-fifo",
        "file",
        with_files(lambda m: {KEY_VAR: os.mkfifo}),
        f"{file_var(KEY_VAR)}: {{scratch}}/dask_cluster_key.input is a FIFO, not a regular file",
    ),
    BadInput(
        "cert-file-huge",
        "file",
        with_files(lambda m: {CERT_VAR: b"A" * (2 << 20)}),
        f"{file_var(CERT_VAR)}: is over 1024 KiB",
    ),
    BadInput(
        "cert-file-empty",
        "file",
        with_files(lambda m: {CERT_VAR: b""}),
        f"{file_var(CERT_VAR)}: {{scratch}}/dask_cluster_cert.input is empty",
    ),
    BadInput(
        "passphrase-file-blank",
        "file",
        with_files(lambda m: {KEY_VAR: encrypted_key(m), PASSPHRASE_VAR: b"\n"}),
        f"{file_var(PASSPHRASE_VAR)}: {{scratch}}/dask_cluster_key_passphrase.input is empty",
    ),
    BadInput(
        "key-file-missing",
        "file",
        changed({KEY_VAR: None, file_var(KEY_VAR): "/run/secrets/none"}),
        f"{file_var(KEY_VAR)}: cannot read /run/secrets/none: No such file or directory",
    ),
    BadInput(
        "key-file-symlink-to-fifo",
        "file",
        with_files(lambda m: {KEY_VAR: symlink_to_fifo}),
        f"{file_var(KEY_VAR)}: {{scratch}}/dask_cluster_key.input is a FIFO, not a regular file",
    ),
    BadInput(
        "passphrase-file-fifo",
        "file",
        with_files(lambda m: {KEY_VAR: encrypted_key(m), PASSPHRASE_VAR: os.mkfifo}),
        f"{file_var(PASSPHRASE_VAR)}: {{scratch}}/dask_cluster_key_passphrase.input is a FIFO",
    ),
    BadInput(
        "cert-file-socket",
        "file",
        with_files(lambda m: {CERT_VAR: unix_socket}),
        f"{file_var(CERT_VAR)}: {{scratch}}/dask_cluster_cert.input is a socket, not a regular",
    ),
    BadInput(
        "ca-file-device",
        "file",
        changed({CA_VAR: None, file_var(CA_VAR): "/dev/null"}),
        f"{file_var(CA_VAR)}: /dev/null is a character device, not a regular file",
    ),
    BadInput(
        "chain-of-1000",
        "size",
        with_files(lambda m: issued_as_cluster(chain_of(m.ca, [0] * 1000))),
        f"{CERT_VAR}: holds 1000 certificates, over the limit of 10",
    ),
    BadInput(
        "san-of-5000-names",
        "size",
        with_files(
            lambda m: issued_as_cluster(
                [issue("cluster", m.ca, names=tuple(f"w{i}.dask.example.com" for i in range(5000)))]
            )
        ),
        f"{CERT_VAR}: certificate 1 is over the limit of 16 KiB",
    ),
    BadInput(
        "extension-of-100-kb",
        "size",
        with_files(lambda m: issued_as_cluster([issue("cluster", m.ca, extra=padding(100_000))])),
        f"{CERT_VAR}: certificate 1 is over the limit of 16 KiB",
    ),
    BadInput(
        "chain-over-64-kib",
        "size",
        derived(
            lambda m: {
                CERT_VAR: pem_of(chain := chain_of(m.ca, [14_000] * 5)),
                KEY_VAR: chain[0].key_pem.decode(),
            }
        ),
        f"{CERT_VAR}: the certificate and its intermediates are over the limit of 64 KiB",
    ),
    BadInput(
        "ca-certificate-over-16-kib",
        "size",
        derived(lambda m: {CA_VAR: issue("CA", ca=True, extra=padding(20_000)).cert_pem.decode()}),
        f"{CA_VAR}: certificate 1 is over the limit of 16 KiB",
    ),
    BadInput(
        "ca-bundle-of-33",
        "size",
        derived(
            lambda m: {CA_VAR: pem_of([m.ca, *(issue(f"CA {i}", ca=True) for i in range(32))])}
        ),
        f"{CA_VAR}: holds 33 certificates, over the limit of 32",
    ),
    BadInput(
        "cert-duplicate-extension",
        "unreadable",
        derived(lambda m: {CERT_VAR: with_duplicate_extension(m.ca)}),
        f"{CERT_VAR}: certificate 1 cannot be read: the extension "
        f"{PADDING_OID.dotted_string} appears twice",
    ),
    BadInput(
        "ca-duplicate-extension",
        "unreadable",
        derived(lambda m: {CA_VAR: with_duplicate_extension(m.ca)}),
        f"{CA_VAR}: certificate 1 cannot be read: the extension",
    ),
    BadInput(
        "expired-from-the-ca",
        "validity",
        derived(
            lambda m: {
                CERT_VAR: (
                    old := issue("cluster", m.ca, not_before=ago(9), days=2)
                ).cert_pem.decode(),
                KEY_VAR: old.key_pem.decode(),
            }
        ),
        f"{CERT_VAR}: the certificate expired on",
    ),
    BadInput(
        "ca-expired",
        "authority validity",
        derived(expired_ca_pair),
        f"{CA_VAR}: the CA CN=old CA expired on",
    ),
    BadInput(
        "ca-not-yet-valid",
        "authority validity",
        derived(
            lambda m: {
                CA_VAR: issue("CA", ca=True, not_before=now() + timedelta(days=2)).cert_pem.decode()
            }
        ),
        f"{CA_VAR}: the CA CN=CA is not valid before",
    ),
    BadInput(
        "intermediate-expired",
        "authority validity",
        derived(
            through(
                lambda ca: issue("middle", ca, ca=True, names=(), not_before=ago(30), days=29.5)
            )
        ),
        f"{CERT_VAR}: certificate 2 (CN=middle) expired on",
    ),
    BadInput(
        "intermediate-not-a-ca",
        "authority validity",
        derived(through(lambda ca: issue("middle", ca, names=(), not_before=ago(2)))),
        f"{CERT_VAR}: certificate 2 (CN=middle) is not a CA certificate",
    ),
    BadInput(
        "crl-garbage",
        "revocation list",
        changed({CRL_VAR: "not a list"}),
        f"{CRL_VAR}: is neither PEM text nor base64",
    ),
    BadInput(
        "crl-holds-a-certificate",
        "revocation list",
        derived(lambda m: {CRL_VAR: m.ca.cert_pem.decode()}),
        f"{CRL_VAR}: holds another kind of PEM, not a CRL",
    ),
    BadInput(
        "crl-truncated",
        "revocation list",
        derived(lambda m: {CRL_VAR: crl(m.ca)[:150] + "\n-----END X509 CRL-----\n"}),
        f"{CRL_VAR}: is not a readable PEM CRL",
    ),
    BadInput(
        "crl-of-another-ca",
        "revocation list",
        derived(lambda m: {CRL_VAR: crl(issue("test CA", ca=True))}),
        f"{CRL_VAR}: is not signed by the CA in {CA_VAR}",
    ),
    BadInput(
        "crl-past-its-next-update",
        "revocation list",
        derived(lambda m: {CRL_VAR: crl(m.ca, last=ago(10), next_update=ago(1))}),
        f"{CRL_VAR}: its next update was due on",
    ),
    BadInput(
        "crl-not-yet-valid",
        "revocation list",
        derived(lambda m: {CRL_VAR: crl(m.ca, last=now() + timedelta(hours=2))}),
        f"{CRL_VAR}: is not valid before",
    ),
    BadInput(
        "crl-revokes-the-cluster",
        "revocation list",
        derived(lambda m: {CRL_VAR: crl(m.ca, (m.cluster.cert.serial_number,))}),
        f"{CRL_VAR}: revokes the cluster's own certificate",
    ),
    BadInput(
        "memory-words",
        "sizing",
        changed({MEMORY_VAR: "plenty"}),
        f"{MEMORY_VAR}: 'plenty' is not a size",
    ),
    BadInput(
        "workers-zero", "sizing", changed({WORKERS_VAR: "0"}), f"{WORKERS_VAR}: 0 is out of range"
    ),
    BadInput(
        "workers-huge",
        "sizing",
        changed({WORKERS_VAR: "100000"}),
        f"{WORKERS_VAR}: 100000 is out of range",
    ),
    BadInput(
        "workers-word",
        "sizing",
        changed({WORKERS_VAR: "four"}),
        f"{WORKERS_VAR}: 'four' is not a whole number",
    ),
    BadInput(
        "threads-negative",
        "sizing",
        changed({THREADS_VAR: "-1"}),
        f"{THREADS_VAR}: '-1' is not a whole",
    ),
    BadInput(
        "threads-fraction",
        "sizing",
        changed({THREADS_VAR: "1.5"}),
        f"{THREADS_VAR}: '1.5' is not a whole",
    ),
    BadInput(
        "memory-infinite",
        "sizing",
        changed({MEMORY_VAR: "1e309"}),
        f"{MEMORY_VAR}: '1e309' is not a size",
    ),
    BadInput("memory-zero", "sizing", changed({MEMORY_VAR: "0"}), f"{MEMORY_VAR}: '0' is below"),
    BadInput(
        "memory-negative", "sizing", changed({MEMORY_VAR: "-4"}), f"{MEMORY_VAR}: '-4' is below"
    ),
    BadInput(
        "memory-over-the-limit",
        "sizing",
        changed({WORKERS_VAR: "2", MEMORY_VAR: "100000"}),
        f"{MEMORY_VAR}: 2 workers x 90.95 TiB is more than the container's",
    ),
    BadInput(
        "dashboard-protocol",
        "dashboard",
        changed({DASHBOARD_VAR: "ftp"}),
        f"{DASHBOARD_VAR}: 'ftp' is not https or http",
    ),
    BadInput(
        "http-client-cert",
        "dashboard",
        changed({HTTP_CLIENT_CERT_VAR: "maybe"}),
        f"{HTTP_CLIENT_CERT_VAR}: 'maybe' is not required or none",
    ),
    BadInput(
        "tls-floor-below-1.2",
        "tls floor",
        changed({TLS_FLOOR_VAR: "1.1"}),
        f"{TLS_FLOOR_VAR}: '1.1' is not 1.2 or 1.3",
    ),
    BadInput(
        "tls-floor-lowercase",
        "tls floor",
        changed({"DASK_distributed__comm__tls__min-version": "1.1"}),
        "DASK_distributed__comm__tls__min-version: '1.1' is not 1.2 or 1.3",
    ),
    BadInput(
        "tls-floor-twice",
        "tls floor",
        changed({TLS_FLOOR_VAR: "1.3", "DASK_distributed__comm__tls__min_version": "1.2"}),
        f"{TLS_FLOOR_VAR}: is set twice, as",
    ),
    *(
        BadInput(
            f"overrides-{name.lower()}",
            "fixed dask setting",
            changed({name: value}),
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
        "role-unknown",
        "role",
        changed({ROLE_VAR: "boss"}),
        f"{ROLE_VAR}: 'boss' is not all, scheduler or worker",
    ),
    BadInput(
        "worker-without-scheduler",
        "role",
        changed({ROLE_VAR: "worker"}),
        f"{SCHEDULER_ADDRESS_VAR}: is not set, and {ROLE_VAR}=worker needs it",
    ),
    BadInput(
        "role-lowercase-unknown",
        "role",
        changed({"DASK_role": "boss"}),
        "DASK_role: 'boss' is not all, scheduler or worker",
    ),
    BadInput(
        "scheduler-address-lowercase-not-tls",
        "role",
        changed({ROLE_VAR: "worker", "DASK_scheduler_address": "tcp://scheduler:8786"}),
        "DASK_scheduler_address: tcp:// is not TLS",
    ),
    BadInput(
        "scheduler-address-not-tls",
        "role",
        changed({ROLE_VAR: "worker", SCHEDULER_ADDRESS_VAR: "tcp://scheduler:8786"}),
        f"{SCHEDULER_ADDRESS_VAR}: tcp:// is not TLS",
    ),
    BadInput(
        "scheduler-address-not-host-port",
        "role",
        changed({ROLE_VAR: "worker", SCHEDULER_ADDRESS_VAR: "scheduler:port"}),
        f"{SCHEDULER_ADDRESS_VAR}: 'scheduler:port' is not HOST:PORT",
    ),
    *(
        BadInput(
            f"drain-{case}",
            "drain",
            changed({ROLE_VAR: "worker", SCHEDULER_ADDRESS_VAR: "scheduler", DRAIN_VAR: value}),
            f"{DRAIN_VAR}: {value!r} is {problem}",
        )
        for case, value, problem in (
            ("word", "soon", "not a duration"),
            ("negative", "-5", "not a duration"),
            ("too-long", "2h", "out of range"),
        )
    ),
    BadInput(
        "scratch-missing",
        "scratch",
        changed({SCRATCH_VAR: "/nonexistent/scratch"}),
        f"{SCRATCH_VAR}: the workers' scratch space /nonexistent/scratch is not writable",
    ),
    BadInput(
        "scratch-lowercase-missing",
        "scratch",
        changed({"DASK_temporary_directory": "/nonexistent/scratch"}),
        f"{SCRATCH_VAR}: the workers' scratch space /nonexistent/scratch is not writable",
    ),
]
BY_ID = {bad.id: bad for bad in BAD_INPUTS}
assert len(BY_ID) == len(BAD_INPUTS)


def first_of_each_kind() -> list[BadInput]:
    """One row per kind of mistake, in the table's order."""
    first: dict[str, BadInput] = {}
    for bad in BAD_INPUTS:
        first.setdefault(bad.kind, bad)
    return list(first.values())


MATERIAL_VARS = (CERT_VAR, KEY_VAR, CA_VAR, CRL_VAR)


def reloadable(bad: BadInput, material: ClusterMaterial, scratch: Path) -> dict[str, bytes]:
    """What to put in the mounted files (variable -> content) to give a running container this
    row's material on SIGHUP; {} when the row is not about the material's content (sizes, roles,
    files of another kind, a variable unset: a running container cannot be given those)."""
    env, good = bad.env(material, scratch), material.ca_env()
    texts = {name: env[name] for name in MATERIAL_VARS if name in env}
    if set(env) - set(MATERIAL_VARS) or set(good) - set(texts) or texts == good:
        return {}
    if any(not value.strip() or (not value.isprintable() and "\n" not in value)
           for value in texts.values()):  # fmt: skip
        return {}  # empty, or not text: a file says so in words of its own
    return {name: value.encode() for name, value in texts.items() if good.get(name) != value}


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True

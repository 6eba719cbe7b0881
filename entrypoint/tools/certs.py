"""Throwaway certificates made with `cryptography`: a CA of its own for one cluster, the cluster's
certificate (server and client at once, as the workers need) and a client certificate.

`python -m entrypoint certs new|renew|inspect` is the command line (see `certs_tool`); tests issue
theirs here.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from entrypoint.contract import (
    CA_FILE,
    CA_KEY_PEM,
    CA_PEM,
    CA_VAR,
    CERT_FILE,
    CERT_VAR,
    CLUSTER_ENV,
    CLUSTER_KEY_PEM,
    CLUSTER_PEM,
    CRL_FILE,
    CRL_PEM,
    CRL_VAR,
    KEY_FILE,
    KEY_VAR,
    SECRETS_DIR,
    VIEWER_OID,
    client_files,
)
from entrypoint.errors import ToolError
from entrypoint.tls import TLS_KEY_TYPES, is_ca, same_key

DEFAULT_NAMES = ("localhost", "127.0.0.1")
VIEWER = x509.ObjectIdentifier(VIEWER_OID)
# a list's lastUpdate is this far back: a cluster whose clock is behind ours still takes it at once
CLOCK_SKEW = timedelta(minutes=5)
GITIGNORE = ".gitignore"
# Written into every folder `certs new|renew` fills: git takes only the certificates (public)
# from it, however the folder is added. An allow-list, so that any private file the tools write
# (keys, .p12 bundles, cluster.env, secrets/, the .NAME.new of a write) stays out, now and later.
GITIGNORE_TEXT = b"""\
# written by `certs new`: only certificates (public) may be committed from this folder; keys,
# .p12 bundles, cluster.env (the key in base64) and secrets/ never
*
!.gitignore
!*.pem
*-key.pem
"""
NEW_CA = "`certs new --out ANOTHER` makes a new CA (then every certificate changes)"


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
    client_only: bool = False,
    viewer: bool = False,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    days: float = 90,
    not_before: datetime | None = None,
    names: tuple[str, ...] = DEFAULT_NAMES,
    extra: tuple[x509.ExtensionType, ...] = (),
) -> Issued:
    """A certificate for `common_name`, signed by `issuer` (self-signed when None), in RFC 5280's
    profile: key identifiers, a critical keyUsage; a CA signs certificates and CRLs, a leaf serves
    and connects (the cluster's: scheduler and workers are both) or, `client_only`, connects; a
    `viewer` connects to the dashboard only (the VIEWER purpose beside clientAuth). The `extra`
    extensions (non-critical) are added as they are."""
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(issuer, key), critical=False)
        .add_extension(_key_usage(ca, key), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(names)), critical=False
        )
    if not ca:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if viewer:
            usages.append(VIEWER)
        elif not client_only:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, _digest_for(signer)), key)


def _authority_key_identifier(
    issuer: Issued | None, key: CertificateIssuerPrivateKeyTypes
) -> x509.AuthorityKeyIdentifier:
    """The issuer's subject key identifier. RFC 5280 lets a self-signed CA omit it; ours names
    its own key, as `openssl req -x509` does, which helps chain building and costs nothing."""
    if issuer is None:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:  # a CA from before key identifiers: derive it the same way
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(ca: bool, key: CertificateIssuerPrivateKeyTypes) -> x509.KeyUsage:
    """A CA: keyCertSign and cRLSign only. A leaf: digitalSignature (TLS 1.3 and ECDHE sign), and
    for RSA keyEncipherment, which TLS 1.2's RSA key exchange needs should a peer still use it."""
    leaf_rsa = not ca and isinstance(key, rsa.RSAPrivateKey)
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=leaf_rsa,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


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
    """What `certs new` or `certs renew` issued; `written` lists every file written, keys 0600."""

    ca: Issued
    cluster: Issued
    clients: dict[str, Issued]  # viewers' among them
    written: list[Path]


Files = dict[str, tuple[bytes, int]]  # name in the folder -> (content, mode)


def new_cluster(
    directory: Path,
    names: tuple[str, ...] = DEFAULT_NAMES,
    clients: tuple[str, ...] = ("client",),
    kind: str = "ec",
    days: float = 365,
    viewers: tuple[str, ...] = (),
) -> ClusterSet:
    """A CA for this one cluster, the cluster's certificate (for `names`), one certificate per
    client and per viewer, and the forms users paste: a base64 env file and the files for a
    mounted secret."""
    ca = issue(f"dask-tls CA {directory.resolve().name}", ca=True, key=new_key(kind), days=days)
    files = {GITIGNORE: (GITIGNORE_TEXT, 0o644), **_ca_files(ca)}
    return _issue_from(ca, files, directory, names, (clients, viewers), kind, days)


def renew_cluster(
    directory: Path,
    names: tuple[str, ...] | None = None,
    clients: tuple[str, ...] = (),
    days: float = 365,
    viewers: tuple[str, ...] = (),
) -> ClusterSet:
    """A new cluster certificate and key (the current one's names unless `names`, its key type)
    and new certificates for `clients` and `viewers`, from the CA in `directory` that `certs new`
    made. The CA's files stay as they are; the validity ends with the CA's at the latest."""
    ca = load_ca(directory)
    current = _certificate_or_none(directory / CLUSTER_PEM)
    names = names or (names_of(current) if current else ())
    if not names:
        raise ToolError(f"{directory / CLUSTER_PEM}: no names to renew it for; give --name")
    ca_days_left = (ca.cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400
    if ca_days_left <= 0:
        expired = f"{ca.cert.not_valid_after_utc:%Y-%m-%d}"
        raise ToolError(f"{directory / CA_PEM}: the CA expired on {expired}; {NEW_CA}")
    kind = _kind_of(current or ca.cert)
    people = (clients, viewers)
    # a folder from before the tools wrote one; one the user keeps is left as it is
    files = {} if (directory / GITIGNORE).exists() else {GITIGNORE: (GITIGNORE_TEXT, 0o644)}
    return _issue_from(ca, files, directory, names, people, kind, min(days, ca_days_left))


def _issue_from(
    ca: Issued,
    files: Files,
    directory: Path,
    names: tuple[str, ...],
    people: tuple[tuple[str, ...], tuple[str, ...]],  # (clients, viewers)
    kind: str,
    days: float,
) -> ClusterSet:
    cluster = issue("dask-tls cluster", ca, key=new_key(kind), days=days, names=names)
    files = {**files, **_cluster_files(cluster, ca, directory)}
    issued = {}
    clients, viewers = people
    for name in (*clients, *viewers):
        issued[name] = issue(
            name, ca, client_only=True, viewer=name in viewers, key=new_key(kind), days=days,
            names=(),
        )  # fmt: skip
        files.update(_client_files(name, issued[name], ca))
    written = [write_file(directory / name, *content) for name, content in files.items()]
    return ClusterSet(ca, cluster, issued, written)


def _ca_files(ca: Issued) -> Files:
    return {
        CA_PEM: (ca.cert_pem, 0o644),
        CA_KEY_PEM: (ca.key_pem, 0o600),
        f"{SECRETS_DIR}/{CA_FILE}": (ca.cert_pem, 0o600),
    }


def _cluster_files(cluster: Issued, ca: Issued, directory: Path) -> Files:
    crl = directory / CRL_PEM
    return {
        CLUSTER_PEM: (cluster.cert_pem, 0o644),
        CLUSTER_KEY_PEM: (cluster.key_pem, 0o600),
        CLUSTER_ENV: (env_file(cluster, ca, crl.read_bytes() if crl.exists() else None), 0o600),
        f"{SECRETS_DIR}/{CERT_FILE}": (cluster.cert_pem, 0o600),
        f"{SECRETS_DIR}/{KEY_FILE}": (cluster.key_pem, 0o600),
    }


def _client_files(name: str, client: Issued, ca: Issued) -> Files:
    cert, key, bundle = client_files(name)
    return {
        cert: (client.cert_pem, 0o644),
        key: (client.key_pem, 0o600),
        bundle: (browser_bundle(name, client, ca), 0o600),
    }


def load_ca(directory: Path) -> Issued:
    """The CA `certs new` wrote into `directory`: ca.pem and the clear ca-key.pem."""
    if not directory.is_dir():
        raise ToolError(f"{directory}: no such folder; give the folder `certs new` wrote")
    cert_path, key_path = directory / CA_PEM, directory / CA_KEY_PEM
    cert = _certificate_or_none(cert_path)
    if cert is None or not is_ca(cert):
        raise ToolError(f"{cert_path}: no CA certificate there; give the folder `certs new` wrote")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ToolError(
            f"{key_path}: not found; renewing needs the CA's key that `certs new` wrote beside "
            "ca.pem (copy it back from where you keep it offline)"
        ) from None
    except (TypeError, ValueError, UnsupportedAlgorithm):
        raise ToolError(
            f"{key_path}: not a clear PEM private key, as `certs new` wrote it"
        ) from None
    if not isinstance(key, TLS_KEY_TYPES) or not same_key(key, cert):
        raise ToolError(f"{key_path}: is not the key of {cert_path}")
    return Issued(cert, key)


def _certificate_or_none(path: Path) -> x509.Certificate | None:
    try:
        certificates = _certificates_in(path.read_bytes())
    except FileNotFoundError:
        return None
    return certificates[0] if certificates else None


def names_of(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    found = names.get_values_for_type(x509.DNSName) + names.get_values_for_type(x509.IPAddress)
    return tuple(str(name) for name in found)


def strict_ca(cert: x509.Certificate) -> bool:
    """Does the CA carry what strict verifiers (openssl -x509_strict, Python 3.13) require of a
    CA: a subject key identifier and keyUsage? `certs new` before both existed made CAs without."""
    extensions = {type(extension.value) for extension in cert.extensions}
    return {x509.SubjectKeyIdentifier, x509.KeyUsage} <= extensions


def _kind_of(cert: x509.Certificate) -> str:
    """The `new_key` kind of the certificate's key: renewing keeps RSA or ECDSA."""
    public_key = cert.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa{public_key.key_size}"
    return "ed25519" if isinstance(public_key, ed25519.Ed25519PublicKey) else "ec"


def env_file(cluster: Issued, ca: Issued, crl: bytes | None = None) -> bytes:
    """Single-line base64 PEMs: the one form `docker run --env-file` and gcloud carry intact."""
    pems = [(CERT_VAR, cluster.cert_pem), (KEY_VAR, cluster.key_pem), (CA_VAR, ca.cert_pem)]
    return b"".join(env_line(var, pem) for var, pem in [*pems, *([(CRL_VAR, crl)] if crl else [])])


def env_line(var: str, pem: bytes) -> bytes:
    return f"{var}={base64.b64encode(pem).decode()}\n".encode()


def is_viewer(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return VIEWER in usages


@dataclass(frozen=True)
class Revoked:
    """What `revoke` wrote: the list, the serials it added now, and every file written."""

    crl: x509.CertificateRevocationList
    added: list[int]
    written: list[Path]


def revoke(
    directory: Path, names: tuple[str, ...], serials: tuple[int, ...], days: float | None = None
) -> Revoked:
    """Add the certificates of `names` (NAME.pem in `directory`) and `serials` to the CA's
    revocation list, DIR/crl.pem (and secrets/crl.pem, and cluster.env's line), signed by
    ca-key.pem; the entries already there stay. Its next update: in `days`, or when the CA
    expires. Each new list's lastUpdate is later than the previous one's, so that a process that
    holds both (OpenSSL keeps every list it was given) takes the new one."""
    ca = load_ca(directory)
    previous = _previous_crl(directory, ca)
    wanted = [*(_serial_of(directory / client_files(name)[0], ca) for name in names), *serials]
    now = datetime.now(UTC).replace(microsecond=0)
    last_update = _after(previous, now - CLOCK_SKEW)
    ends = ca.cert.not_valid_after_utc
    next_update = min(ends, last_update + timedelta(days=days)) if days else ends
    entries = {entry.serial_number: entry for entry in (previous or [])}
    added = [serial for serial in dict.fromkeys(wanted) if serial not in entries]
    for serial in added:
        entries[serial] = (
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = _signed_crl(ca, list(entries.values()), last_update, next_update, _number(previous) + 1)
    pem = crl.public_bytes(serialization.Encoding.PEM)
    files = {CRL_PEM: (pem, 0o644), f"{SECRETS_DIR}/{CRL_FILE}": (pem, 0o600)}
    env = directory / CLUSTER_ENV
    if env.exists():
        kept = [line for line in env.read_bytes().splitlines(keepends=True)
                if not line.startswith(f"{CRL_VAR}=".encode())]  # fmt: skip
        files[CLUSTER_ENV] = (b"".join([*kept, env_line(CRL_VAR, pem)]), 0o600)
    written = [write_file(directory / name, *content) for name, content in files.items()]
    return Revoked(crl, added, written)


def _after(previous: x509.CertificateRevocationList | None, earliest: datetime) -> datetime:
    """A lastUpdate later than the previous list's (OpenSSL then prefers the new one) and never in
    the future (OpenSSL skips a list not yet valid, and would keep using the previous one)."""
    if previous is None or previous.last_update_utc < earliest:
        return earliest
    later = previous.last_update_utc + timedelta(seconds=1)
    time.sleep(max(0.0, (later - datetime.now(UTC)).total_seconds()))
    return later


def _previous_crl(directory: Path, ca: Issued) -> x509.CertificateRevocationList | None:
    path = directory / CRL_PEM
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        raise ToolError(f"{path}: not a PEM CRL; move it away to start a new list") from None
    if not crl.is_signature_valid(ca.cert.public_key()):  # type: ignore[arg-type]
        raise ToolError(f"{path}: not signed by {directory / CA_PEM}; move it away first")
    return crl


def _serial_of(path: Path, ca: Issued) -> int:
    cert = _certificate_or_none(path)
    if cert is None:
        raise ToolError(f"{path}: no certificate there; give a client's or viewer's name, "
                        "or --serial HEX (certs inspect shows serials)")  # fmt: skip
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ToolError(f"{path}: not issued by {path.parent / CA_PEM}") from None
    return cert.serial_number


def _number(crl: x509.CertificateRevocationList | None) -> int:
    if crl is None:
        return 0
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _signed_crl(
    ca: Issued, entries: list[x509.RevokedCertificate], last_update: datetime,
    next_update: datetime, number: int,
) -> x509.CertificateRevocationList:  # fmt: skip
    """RFC 5280's profile: the CA's key identifier and a CRL number that grows."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(_authority_key_identifier(ca, ca.key), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, _digest_for(ca.key))


def _digest_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """Ed25519/Ed448 sign without a separate hash."""
    eddsa = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    return None if eddsa else hashes.SHA256()


def browser_bundle(name: str, client: Issued, ca: Issued) -> bytes:
    """PKCS#12 with the client's key and certificate and the CA, for a browser; no password (the
    file is 0600), since browsers that ask accept an empty one."""
    key = cast(pkcs12.PKCS12PrivateKeyTypes, client.key)  # new_key makes RSA, EC or Ed25519
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, client.cert, [ca.cert], serialization.NoEncryption()
    )


def write_file(path: Path, data: bytes, mode: int) -> Path:
    """Replace `path` with `data`, in a file made with `mode` from the start (never a moment
    world-readable) and renamed over the old one: a container reading the folder sees the old file
    or the new one, never none or half of one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def describe(path: Path, data: bytes) -> list[str]:
    """One line per PEM block in `data`, read from `path`: what it is, who issued it, when it
    expires."""
    lines = [f"{path}: {_describe_certificate(c)}" for c in _certificates_in(data)]
    lines += [f"{path}: {_describe_crl(data)}"] if b"BEGIN X509 CRL" in data else []
    if b"PRIVATE KEY-----" in data:
        lines.append(f"{path}: {_describe_key(data)}")
    return lines or [f"{path}: no PEM certificate or private key"]


def key_matches(key_pem: bytes, cert_pem: bytes) -> bool | None:
    """Whether the key is the first certificate's; None when that cannot be told: the key is
    encrypted or unreadable, or there is no readable certificate."""
    certificates = _certificates_in(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return None
    return same_key(key, certificates[0]) if certificates else None


def names_in(cert_pem: bytes) -> list[str]:
    """The DNS names and IP addresses (subject alternative names) the first certificate in
    `cert_pem` is issued for; ValueError when it holds no PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    addresses = names.get_values_for_type(x509.IPAddress)
    return [*names.get_values_for_type(x509.DNSName), *(str(a) for a in addresses)]


def _certificates_in(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _describe_crl(data: bytes) -> str:
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        return "unreadable revocation list"
    serials = ", ".join(f"{entry.serial_number:x}" for entry in crl) or "none"
    ends = f"{crl.next_update_utc:%Y-%m-%d}" if crl.next_update_utc else "never"
    return (
        f"revocation list of {crl.issuer.rfc4514_string()}, from "
        f"{crl.last_update_utc:%Y-%m-%d %H:%M:%S}, next update {ends}; revoked serials: {serials}"
    )


def _describe_certificate(cert: x509.Certificate) -> str:
    left = (cert.not_valid_after_utc - datetime.now(UTC)).days
    kind = "CA " if is_ca(cert) else "viewer (dashboard only) " if is_viewer(cert) else ""
    return (
        f"{kind}certificate {cert.subject.rfc4514_string()}, serial {cert.serial_number:x}, "
        f"issued by {cert.issuer.rfc4514_string()}, {type(cert.public_key()).__name__}, "
        f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d} "
        f"({'expired' if left < 0 else f'{left} days left'})"
    )


def _describe_key(data: bytes) -> str:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return "encrypted private key (needs its passphrase)"
    except (ValueError, UnsupportedAlgorithm):
        return "unreadable private key"
    size = getattr(key, "key_size", None)
    return f"private key, {type(key).__name__}{f' {size} bits' if size else ''}"


def write_dev_set(directory: Path, days: float = 90) -> ClusterSet:
    """The throwaway set `make certs` makes for localhost."""
    return new_cluster(directory, days=days)


def blogs_certificate(common_name: str) -> Issued:
    """What the blog's `openssl req -newkey rsa:2048 -new -nodes -x509` makes with Debian's
    openssl.cnf (v3_ca): self-signed, CA:TRUE, key identifiers, no keyUsage, no extendedKeyUsage;
    its users take it as CA, server and client certificate at once."""
    key = new_key("rsa2048")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.now(UTC) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return Issued(builder.sign(key, hashes.SHA256()), key)

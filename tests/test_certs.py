"""What `certs new` issues: RFC 5280 clean certificates that `openssl verify -x509_strict` and
Python 3.13's strict default context accept."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from entrypoint.cli import main
from tests.containers import Container

E = TypeVar("E", bound=x509.ExtensionType)
PYTHON_313 = Path.home() / ".pyenv/versions/3.13.0/bin/python"
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
CERTIFICATES = ["ca.pem", "cluster.pem", "alice.pem", "secrets/cert.pem", "secrets/ca.pem"]
# stdlib only: 3.13's create_default_context() sets VERIFY_X509_STRICT. distributed's listener
# writes its handshake frame first, and only once it accepted our certificate: reading it proves
# the mutual handshake, server certificate and hostname checked on our side.
STRICT_CLIENT = """
import socket, ssl, sys
host, port, ca, cert, key = sys.argv[1:]
context = ssl.create_default_context(cafile=ca)
assert context.verify_flags & ssl.VERIFY_X509_STRICT and context.check_hostname
context.load_cert_chain(cert, key)
with socket.create_connection((host, int(port)), timeout=20) as raw:
    with context.wrap_socket(raw, server_hostname=host) as tls:
        print(tls.version(), len(tls.recv(1)))
"""


@pytest.fixture(scope="module", params=["ecdsa", "rsa"])
def issued(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(request.param)
    rsa_flag = ["--rsa"] if request.param == "rsa" else []
    assert main(["certs", "new", "--out", str(out), "--client", "alice", *rsa_flag]) == 0
    return out


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def openssl_verify(
    folder: Path, path: Path, purpose: str = "any"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-x509_strict", "-purpose", purpose,
         "-CAfile", str(folder / "ca.pem"), str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def extension(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.parametrize("name", CERTIFICATES)
def test_openssl_verifies_every_certificate_strictly(issued: Path, name: str) -> None:
    """`openssl verify -x509_strict` accepts every certificate written, against ca.pem."""
    result = openssl_verify(issued, issued / name)
    assert result.returncode == 0 and result.stdout.endswith(": OK\n"), (
        result.stdout + result.stderr
    )


def test_openssl_verifies_the_browser_bundles_certificate(issued: Path, tmp_path: Path) -> None:
    """The certificate inside alice.p12 (the one a browser presents) verifies strictly too."""
    bundle = pkcs12.load_pkcs12((issued / "alice.p12").read_bytes(), None)
    assert bundle.cert is not None
    pem = tmp_path / "from-p12.pem"
    pem.write_bytes(bundle.cert.certificate.public_bytes(serialization.Encoding.PEM))
    assert openssl_verify(issued, pem, "sslclient").returncode == 0


def test_purposes_cluster_serves_and_connects_clients_only_connect(issued: Path) -> None:
    """OpenSSL's purpose checks: the cluster certificate is a TLS server and client, a client
    certificate only a client."""
    assert openssl_verify(issued, issued / "cluster.pem", "sslserver").returncode == 0
    assert openssl_verify(issued, issued / "cluster.pem", "sslclient").returncode == 0
    assert openssl_verify(issued, issued / "alice.pem", "sslclient").returncode == 0
    refused = openssl_verify(issued, issued / "alice.pem", "sslserver")
    assert refused.returncode != 0 and "unsuitable certificate purpose" in refused.stderr


def test_every_certificate_has_key_identifiers(issued: Path) -> None:
    """Each certificate has a subject key identifier and an authority key identifier naming the
    CA's (the self-signed CA's names its own key)."""
    ca_key_id = extension(certificate(issued / "ca.pem"), x509.SubjectKeyIdentifier).value
    for name in ("ca.pem", "cluster.pem", "alice.pem"):
        cert = certificate(issued / name)
        subject_key_id = extension(cert, x509.SubjectKeyIdentifier)
        authority_key_id = extension(cert, x509.AuthorityKeyIdentifier)
        assert not subject_key_id.critical and not authority_key_id.critical
        assert subject_key_id.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        assert authority_key_id.value.key_identifier == ca_key_id.digest


def test_key_usage_of_the_ca_and_the_leaves(issued: Path) -> None:
    """The CA signs certificates and CRLs only; leaves sign (RSA ones also encipher keys), the
    cluster for server and client, clients for client authentication alone; all critical."""
    ca = extension(certificate(issued / "ca.pem"), x509.KeyUsage)
    assert ca.critical and (ca.value.key_cert_sign, ca.value.crl_sign) == (True, True)
    assert not ca.value.digital_signature
    assert extension(certificate(issued / "ca.pem"), x509.BasicConstraints).critical
    for name, purposes in (("cluster.pem", [SERVER, CLIENT]), ("alice.pem", [CLIENT])):
        cert = certificate(issued / name)
        usage = extension(cert, x509.KeyUsage)
        is_rsa = isinstance(cert.public_key(), rsa.RSAPublicKey)
        assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
        assert usage.value.key_encipherment == is_rsa
        assert list(extension(cert, x509.ExtendedKeyUsage).value) == purposes
        assert not extension(cert, x509.BasicConstraints).value.ca


@pytest.mark.container
def test_python_313_strict_client_completes_mutual_tls(image: str, issued: Path) -> None:
    """A stdlib client on Python 3.13 (strict X.509 verification by default) verifies the cluster
    certificate and its name, presents alice's, and the scheduler accepts it."""
    files = {"CERT": "cluster.pem", "KEY": "cluster-key.pem", "CA": "ca.pem"}
    env = {f"DASK_CLUSTER_{var}": (issued / name).read_text() for var, name in files.items()}
    container = Container(image, {**env, "NUM_WORKERS": "1"})
    try:
        container.wait_healthy()
        result = subprocess.run(
            [str(PYTHON_313), "-c", STRICT_CLIENT, "127.0.0.1", str(container.port()),
             str(issued / "ca.pem"), str(issued / "alice.pem"), str(issued / "alice-key.pem")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["TLSv1.3", "1"]
    finally:
        container.remove()

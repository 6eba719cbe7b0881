"""What `certs new` and `certs renew` issue: RFC 5280 clean certificates that `openssl verify
-x509_strict` and Python 3.13's strict default context accept, renewed from the same CA."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from entrypoint import settings, tls
from entrypoint.tools.certs import Issued, blogs_certificate, issue
from entrypoint.tools.cli import main
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


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def names_in(cert: x509.Certificate) -> list[str]:
    names = extension(cert, x509.SubjectAlternativeName).value
    return [str(name) for name in names.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    ]


PRIVATE = ["cluster-key.pem", "cluster.env", "secrets/cert.pem", "secrets/key.pem", "bob-key.pem",
           "bob.p12"]  # fmt: skip
CA_FILES = ["ca.pem", "ca-key.pem", "secrets/ca.pem"]


@pytest.fixture
def renewed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, dict[str, bytes], str]:
    """A folder from `certs new` (cluster key made 0644 by its user), its files before, and the
    printout of `certs renew --client bob` there."""
    folder = tmp_path / "certs"
    new = ["certs", "new", "--out", str(folder), "--name", "10.1.2.3", "--client", "alice"]
    assert main(new) == 0
    (folder / "cluster-key.pem").chmod(0o644)
    before = files_in(folder)
    capsys.readouterr()
    assert main(["certs", "renew", "--certs", str(folder), "--client", "bob"]) == 0
    return folder, before, capsys.readouterr().out


def test_renew_issues_a_new_cluster_certificate_from_the_same_ca(
    renewed: tuple[Path, dict[str, bytes], str],
) -> None:
    """The renewed cluster certificate has a new serial and key and the same names, verifies
    strictly against the unchanged CA; the old client certificate and the new one still verify."""
    folder, before, _ = renewed
    after = files_in(folder)
    assert {name: after[name] for name in CA_FILES} == {name: before[name] for name in CA_FILES}
    old = x509.load_pem_x509_certificate(before["cluster.pem"])
    new = certificate(folder / "cluster.pem")
    assert new.serial_number != old.serial_number
    assert after["cluster-key.pem"] != before["cluster-key.pem"]
    assert new.public_key() != old.public_key()
    assert names_in(new) == names_in(old) == ["10.1.2.3"]
    for name, purpose in (("cluster.pem", "sslserver"), ("alice.pem", "sslclient"),
                          ("bob.pem", "sslclient")):  # fmt: skip
        result = openssl_verify(folder, folder / name, purpose)
        assert result.returncode == 0, result.stdout + result.stderr
    assert list(extension(certificate(folder / "bob.pem"), x509.ExtendedKeyUsage).value) == [CLIENT]


def test_renew_rewrites_every_form_with_the_modes_of_new(
    renewed: tuple[Path, dict[str, bytes], str],
) -> None:
    """cluster.env and the secret files carry the new certificate and key; keys are 0600 again
    (replaced, not rewritten in place), certificates 0644."""
    folder, _, _ = renewed
    assert {name: mode(folder / name) for name in PRIVATE} == dict.fromkeys(PRIVATE, 0o600)
    assert mode(folder / "cluster.pem") == mode(folder / "bob.pem") == 0o644
    assert (folder / "secrets/cert.pem").read_bytes() == (folder / "cluster.pem").read_bytes()
    assert (folder / "secrets/key.pem").read_bytes() == (folder / "cluster-key.pem").read_bytes()
    environ = dict(line.split("=", 1) for line in (folder / "cluster.env").read_text().split())
    checked = tls.check(settings.from_environ(environ).pems, datetime.now(UTC))
    assert checked.cert_pem == (folder / "cluster.pem").read_bytes()
    assert not list(folder.rglob(".*.new"))


def test_renew_says_what_it_wrote_and_how_to_deliver_it(
    renewed: tuple[Path, dict[str, bytes], str],
) -> None:
    """One line per file written, the HUP for mounted files, a new container for -e values."""
    folder, _, out = renewed
    wrote = [line for line in out.splitlines() if line.startswith("wrote ")]
    names = ["cluster.pem", "cluster-key.pem", "cluster.env", "secrets/cert.pem", "secrets/key.pem",
             "bob.pem", "bob-key.pem", "bob.p12"]  # fmt: skip
    assert sorted(wrote) == sorted(f'wrote "{folder / n}" ({mode(folder / n):04o})' for n in names)
    assert "docker kill -s HUP CONTAINER" in out and "start a new container" in out


def test_renew_takes_names_and_days(tmp_path: Path) -> None:
    """--name replaces the names; --days sets the validity."""
    folder = tmp_path / "certs"
    assert main(["certs", "new", "--out", str(folder), "--rsa"]) == 0
    assert main(["certs", "renew", "--certs", str(folder), "--name", "dask.example.com",
                 "--days", "10"]) == 0  # fmt: skip
    cert = certificate(folder / "cluster.pem")
    assert names_in(cert) == ["dask.example.com"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 10
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)


@pytest.mark.parametrize("case", ["no-ca-key", "no-folder", "not-a-ca"])
def test_renew_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Without the CA's key, its folder or a CA certificate, renew writes nothing and says why in
    one line."""
    folder = tmp_path / "certs"
    assert main(["certs", "new", "--out", str(folder)]) == 0
    capsys.readouterr()
    if case == "no-ca-key":
        (folder / "ca-key.pem").unlink()
    elif case == "not-a-ca":
        (folder / "ca.pem").write_bytes((folder / "cluster.pem").read_bytes())
    before = files_in(folder)
    target = tmp_path / "elsewhere" if case == "no-folder" else folder
    assert main(["certs", "renew", "--certs", str(target)]) == 1
    out, err = capsys.readouterr()
    says = {
        "no-ca-key": f"dask-tls: {folder}/ca-key.pem: not found; renewing needs the CA's key",
        "no-folder": f"dask-tls: {target}: no such folder; give the folder `certs new` wrote",
        "not-a-ca": f"dask-tls: {folder}/ca.pem: no CA certificate there",
    }[case]
    assert out == "" and err.startswith(says) and err.count("\n") == 1, err
    assert files_in(folder) == before


def replace_ca(folder: Path, ca: Issued) -> None:
    (folder / "ca.pem").write_bytes(ca.cert_pem)
    (folder / "ca-key.pem").write_bytes(ca.key_pem)


def test_renew_warns_about_a_ca_strict_clients_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CA without keyUsage (as `openssl req -x509` or an older `certs new` made it) still
    renews, with a warning that strict clients refuse it."""
    folder = tmp_path / "certs"
    assert main(["certs", "new", "--out", str(folder)]) == 0
    replace_ca(folder, blogs_certificate("old CA"))
    capsys.readouterr()
    assert main(["certs", "renew", "--certs", str(folder)]) == 0
    assert "warning: ca.pem lacks keyUsage or key identifiers" in capsys.readouterr().out


def test_renew_refuses_an_expired_ca_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From a CA past its end, renew issues nothing and says so in one line."""
    folder = tmp_path / "certs"
    assert main(["certs", "new", "--out", str(folder)]) == 0
    replace_ca(
        folder, issue("old", ca=True, not_before=datetime.now(UTC) - timedelta(days=9), days=2)
    )
    capsys.readouterr()
    assert main(["certs", "renew", "--certs", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"dask-tls: {folder}/ca.pem: the CA expired on")


def git(repository: Path, *args: str) -> str:
    """git in `repository`, with no user or system configuration of this machine."""
    result = subprocess.run(
        ["git", *args], cwd=repository, capture_output=True, text=True, timeout=30, check=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_GLOBAL": os.devnull,
             "GIT_CONFIG_NOSYSTEM": "1"},
    )  # fmt: skip
    return result.stdout


@pytest.mark.system
def test_git_add_takes_only_the_certificates(tmp_path: Path) -> None:
    """In a real git repository, `git add -A` after `certs new`, and after `certs renew` in a
    folder that had lost its .gitignore, stages the certificates and the .gitignore only: no key,
    no .p12, no cluster.env, nothing under secrets/."""
    git(tmp_path, "init", "--quiet")
    folder = tmp_path / "certs"
    assert main(["certs", "new", "--out", str(folder), "--client", "alice"]) == 0
    (folder / ".gitignore").unlink(missing_ok=True)
    assert main(["certs", "renew", "--certs", str(folder), "--client", "bob"]) == 0
    git(tmp_path, "add", "-A")
    staged = sorted(git(tmp_path, "ls-files").split())
    public = [".gitignore", "alice.pem", "bob.pem", "ca.pem", "cluster.pem"]
    assert staged == [f"certs/{name}" for name in public]
    assert all(b"PRIVATE KEY" not in (tmp_path / name).read_bytes() for name in staged)
    every = {str(path.relative_to(tmp_path)) for path in folder.rglob("*") if path.is_file()}
    ignored = set(git(tmp_path, "ls-files", "--others", "--ignored", "--exclude-standard").split())
    assert ignored == every - set(staged)
    assert {"certs/cluster.env", "certs/secrets/key.pem", "certs/ca-key.pem"} <= ignored

"""The operator tools: `certs new`, `certs inspect`, `client-config`, and the `connect` helper."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import pkcs12

from entrypoint import settings, tls
from entrypoint.cli import main
from entrypoint.client import connect
from tests.containers import Container, docker

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("issued")
    assert main(["certs", "new", "--out", str(out), "--name", "10.1.2.3", "--client", "alice"]) == 0
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certs_new_writes_private_keys(issued: Path) -> None:
    """Every key, the env file and the secret files are 0600; certificates may be read."""
    private = ["ca-key.pem", "cluster-key.pem", "alice-key.pem", "alice.p12", "cluster.env",
               "secrets/cert.pem", "secrets/key.pem", "secrets/ca.pem"]  # fmt: skip
    assert {name: mode(issued / name) for name in private} == dict.fromkeys(private, 0o600)
    assert mode(issued / "secrets") == 0o700 and mode(issued / "cluster.pem") == 0o644


@pytest.mark.parametrize("form", ["pem-files", "env-file", "secret-files"])
def test_every_written_form_is_accepted(issued: Path, form: str) -> None:
    """The PEM files, the base64 env file and the secret files all pass the entrypoint's checks."""
    if form == "env-file":
        environ = dict(line.split("=", 1) for line in (issued / "cluster.env").read_text().split())
    elif form == "secret-files":
        environ = {f"DASK_CLUSTER_{v}_FILE": str(issued / "secrets" / f"{f}.pem")
                   for v, f in (("CERT", "cert"), ("KEY", "key"), ("CA", "ca"))}  # fmt: skip
    else:
        environ = {"DASK_CLUSTER_CERT": (issued / "cluster.pem").read_text(),
                   "DASK_CLUSTER_KEY": (issued / "cluster-key.pem").read_text(),
                   "DASK_CLUSTER_CA": (issued / "ca.pem").read_text()}  # fmt: skip
    tls.check(settings.from_environ(environ), datetime.now(UTC))


def test_browser_bundle_holds_the_client_and_the_ca(issued: Path) -> None:
    """The PKCS#12 opens without a password and carries alice's key, certificate and the CA."""
    bundle = pkcs12.load_pkcs12((issued / "alice.p12").read_bytes(), None)
    assert bundle.key is not None and bundle.cert is not None
    assert "alice" in bundle.cert.certificate.subject.rfc4514_string()
    assert len(bundle.additional_certs) == 1


def test_inspect_tells_what_each_file_is(issued: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """inspect names each PEM, its issuer and expiry, and which key matches which certificate."""
    files = [issued / n for n in ("ca.pem", "cluster.pem", "cluster-key.pem", "alice-key.pem")]
    assert main(["certs", "inspect", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "ca.pem: CA certificate" in out and "days left" in out
    assert f"{files[2]} matches the certificate in {files[1]}" in out
    assert f"{files[3]} does not match the certificate in {files[1]}" in out


def test_names_are_in_the_cluster_certificate(
    issued: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--name goes into the cluster certificate's subject alternative names."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((issued / "cluster.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.1.2.3" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]


@pytest.mark.container
def test_client_config_and_connect_reach_the_real_cluster(
    image: str, issued: Path, tmp_path: Path
) -> None:
    """With client-config's file, plain Client('tls://...') computes; so does connect(...)."""
    env = {
        "DASK_CLUSTER_CERT": (issued / "cluster.pem").read_text(),
        "DASK_CLUSTER_KEY": (issued / "cluster-key.pem").read_text(),
        "DASK_CLUSTER_CA": (issued / "ca.pem").read_text(),
        "NUM_WORKERS": "1",
    }
    container = Container(image, env)
    try:
        container.wait_healthy()
        config_dir = tmp_path / "dask"
        assert main(["client-config", "--certs", str(issued), "--client", "alice",
                     "--out", str(config_dir / "dask-tls.yaml")]) == 0  # fmt: skip
        plain = (
            "from distributed import Client\n"
            f"with Client('tls://127.0.0.1:{container.port()}', timeout='20s') as c:\n"
            "    print(c.submit(sum, [20, 22]).result(), c.dashboard_link)\n"
        )
        only_the_config = {"DASK_CONFIG": str(config_dir), "PATH": "/usr/bin"}
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", plain], env=only_the_config,
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert result.stdout.split() == ["42", "https://127.0.0.1:8787/status"], result.stderr
        with connect(container.address, issued, "alice", timeout="20s") as client:
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
            assert client.dashboard_link == "https://127.0.0.1:8787/status"
    finally:
        container.remove()


def test_client_config_names_a_missing_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --certs or --client: one line naming the file, exit 1, nothing written."""
    out = tmp_path / "dask-tls.yaml"
    assert main(["client-config", "--certs", str(tmp_path), "--out", str(out)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"client-config: {tmp_path / 'ca.pem'} does not exist")
    assert not out.exists()


@pytest.mark.container
@pytest.mark.parametrize(
    ("mount", "out", "refused"),
    [("same-path", "dask-tls.yaml", None),
     ("other-path", "dask-tls.yaml", "/w/certs/ca.pem is a container path"),
     ("same-path", "~/.config/dask/dask-tls.yaml", "dask-tls.yaml is inside the container")],
    ids=["same-path", "other-path", "default-out"],
)  # fmt: skip
def test_client_config_from_the_image_writes_host_paths_or_refuses(
    image: str, issued: Path, tmp_path: Path, mount: str, out: str, refused: str | None
) -> None:
    """Run from the image as the README shows (-v "$PWD:$PWD" -w "$PWD"), the config and the
    paths in it are the host's; any other way, one line names the path that would not work."""
    work = tmp_path / "project"
    (work / "certs").mkdir(parents=True)
    for name in ("ca.pem", "alice.pem", "alice-key.pem"):
        (work / "certs" / name).write_bytes((issued / name).read_bytes())
    inside = str(work) if mount == "same-path" else "/w"
    result = docker(
        "run", "--rm", "-u", f"{os.getuid()}:{os.getgid()}", "-v", f"{work}:{inside}",
        "-w", inside, image, "client-config", "--certs", "certs", "--client", "alice",
        "--out", out, check=False,
    )  # fmt: skip
    if refused:
        assert result.returncode == 1 and result.stdout == ""
        [line] = result.stderr.splitlines()
        assert refused in line and '-v "$PWD:$PWD" -w "$PWD"' in line
        assert not (work / "dask-tls.yaml").exists()
        return
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((work / "dask-tls.yaml").read_text())["distributed"]
    tls = config["comm"]["tls"]
    assert tls["ca-file"] == str(work / "certs" / "ca.pem")
    assert Path(tls["client"]["cert"]).is_file() and Path(tls["client"]["key"]).is_file()
    assert config["dashboard"]["link"].startswith("https://")

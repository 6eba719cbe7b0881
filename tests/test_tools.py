"""The operator tools: `certs new`, `certs inspect`, `client-config`, and the `connect` helper."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from entrypoint import settings, tls
from entrypoint.contract import DASHBOARD_PORT
from entrypoint.tools import image
from entrypoint.tools.cli import main
from entrypoint.tools.client import connect
from tests.containers import DOCKER, Container, docker

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


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
    tls.check(settings.from_environ(environ).pems, datetime.now(UTC))


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
        assert result.stdout.split() == ["42", f"https://127.0.0.1:{DASHBOARD_PORT}/status"], (
            result.stderr
        )
        with connect(container.address, issued, "alice", timeout="20s") as client:
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
            assert client.dashboard_link == f"https://127.0.0.1:{DASHBOARD_PORT}/status"
    finally:
        container.remove()


def refusal(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one stderr line of a tool that refused `argv` with exit status 1, having printed
    nothing else."""
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("dask-tls: "), err
    return err.removeprefix("dask-tls: ").strip()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--days", "0"], "--days 0: give a number of days above 0"),
        (["--days", "-1"], "--days -1: give a number of days above 0"),
        (["--days", "inf"], "--days inf: give a number of days above 0, at most 36500"),
        (["--client", "ca"], "--client ca: the ca's own files have that name"),
        (["--client", "cluster"], "--client cluster: the cluster's own files have that name"),
        (["--client", "../alice"], "--client '../alice': not usable as a file name"),
        (["--client", "ca-key"], "--client 'ca-key': not usable as a file name"),
        (["--name", ""], "--name '': not a host name or IP address"),
        (["--name", "a b"], "--name 'a b': not a host name or IP address"),
    ],
)
def test_certs_new_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """Each bad argument: one line naming it and what to give instead, exit 1, nothing written."""
    out = tmp_path / "certs"
    assert refusal(capsys, ["certs", "new", "--out", str(out), *args]).startswith(says)
    assert not out.exists()


@pytest.mark.parametrize("case", ["a-file", "under-a-file", "holds-a-ca"])
def test_certs_new_refuses_an_unusable_out_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """An --out that is a file, lies under one, or holds a CA already is refused in one line; the
    CA there is kept."""
    (tmp_path / "file").write_text("mine")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca-key.pem").write_text("a CA key")
    out, says = {
        "a-file": (tmp_path / "file", "is a file; give a folder"),
        "under-a-file": (tmp_path / "file" / "certs", "cannot make it: Not a directory"),
        "holds-a-ca": (tmp_path / "certs", "holds a CA already (ca-key.pem)"),
    }[case]
    assert refusal(capsys, ["certs", "new", "--out", str(out)]).startswith(f"--out {out}: {says}")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ca-key.pem", "certs", "file"]
    assert (tmp_path / "certs" / "ca-key.pem").read_text() == "a CA key"


def test_inspect_describes_an_encrypted_key(
    issued: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """inspect on an encrypted key says what it is and that it cannot tell the match, exit 0."""
    key = serialization.load_pem_private_key((issued / "alice-key.pem").read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ))  # fmt: skip
    assert main(["certs", "inspect", str(encrypted), str(issued / "alice.pem")]) == 0
    out, err = capsys.readouterr()
    assert f"{encrypted}: encrypted private key (needs its passphrase)" in out.splitlines()
    assert f"cannot tell whether {encrypted} matches the certificate in {issued}/alice.pem" in out
    assert err == ""


def test_inspect_refuses_a_missing_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not there: one line naming it, exit 1."""
    missing = tmp_path / "nothere.pem"
    says = f"{missing}: cannot read it: No such file or directory"
    assert refusal(capsys, ["certs", "inspect", str(missing)]) == says


@pytest.fixture
def in_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As in the image: the variable its Dockerfile sets, the user's folder the working one."""
    monkeypatch.setenv(image.IN_IMAGE_VAR, "1")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    monkeypatch.chdir(mounted)
    return mounted


@pytest.mark.parametrize("action", [["new", "--out"], ["renew", "--certs"]])
@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_in_the_image_a_folder_outside_the_mounted_one_is_refused(
    in_image: Path, capsys: pytest.CaptureFixture[str], action: list[str], where: str
) -> None:
    """In the image, a folder outside the working directory would land in the container: one
    line names it and the fix, nothing is written."""
    outside = in_image.parent / "certs" if where == "absolute" else Path("../certs")
    says = refusal(capsys, ["certs", *action, str(outside)])
    assert says.startswith(f"{action[1]} {outside}: is outside the working directory {in_image}")
    assert says.endswith('-v "$PWD:$PWD" -w "$PWD"') and not (in_image.parent / "certs").exists()


def test_in_the_image_its_own_working_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run in the image with no folder mounted, certs new says to mount one."""
    monkeypatch.setenv(image.IN_IMAGE_VAR, "1")
    monkeypatch.chdir(image.APP_DIR)
    says = refusal(capsys, ["certs", "new", "--out", "never-written"])
    assert says.startswith("--out never-written: the working directory is the image's own")
    assert not (image.APP_DIR / "never-written").exists()


def test_paths_print_relative_to_the_working_directory(
    in_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder under the working directory, even given absolute, prints as "$PWD/...": the
    container's view of the path never shows."""
    assert main(["certs", "new", "--out", str(in_image / "certs")]) == 0
    out = capsys.readouterr().out
    assert '-v "$PWD/certs/secrets":/run/secrets/dask-tls:ro' in out
    assert '--env-file "$PWD/certs/cluster.env"' in out and str(in_image) not in out


def readme_command(action: str, image: str) -> str:
    """The README's `docker run ... certs ACTION` line, for `image` and this machine's client."""
    section = README.read_text().split("## Certificates and clients", 1)[1].split("\n## ", 1)[0]
    lines = section.replace("\\\n", " ").splitlines()
    [line] = [line for line in lines if line.startswith("docker run") and f"certs {action}" in line]
    return line.replace("docker run", f"{DOCKER} run", 1).replace("dask-tls:dev", image)


def expanded(words: str, cwd: Path) -> list[str]:
    """`words` as the user's shell in `cwd` expands them."""
    result = subprocess.run(
        ["bash", "-c", f"set -e; printf '%s\\0' {words}"], cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PWD": str(cwd)}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.split("\0")[:-1]


@pytest.mark.container
def test_certs_new_run_as_the_readme_shows_prints_paths_of_this_host(
    image: str, tmp_path: Path
) -> None:
    """Run exactly as the README shows, certs new prints -e, --env-file, -v and client paths that
    exist on the host once the user's shell expands them."""
    result = subprocess.run(
        ["bash", "-c", readme_command("new", image)], cwd=tmp_path,
        env={**os.environ, "PWD": str(tmp_path)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    arguments = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    values = [word for line in arguments for word in expanded(line, tmp_path)]
    pems = [v.split("=", 1)[1] for v in values if v.startswith("DASK_CLUSTER_") and "BEGIN" in v]
    kinds = ["CERTIFICATE", "PRIVATE KEY", "CERTIFICATE"]  # cert, key, CA
    assert [pem.split("\n", 1)[0] for pem in pems] == [f"-----BEGIN {kind}-----" for kind in kinds]
    mounted = [v.split(":", 1)[0] for v in values if v.endswith(":/run/secrets/dask-tls:ro")]
    assert [sorted(p.name for p in Path(m).iterdir()) for m in mounted] == [
        ["ca.pem", "cert.pem", "key.pem"]
    ]
    assert (Path(values[values.index("--env-file") + 1])).is_file()
    quoted = re.findall(r'"\$PWD[^"]*"', result.stdout)
    assert len(quoted) >= 13 and all(Path(expanded(q, tmp_path)[0]).exists() for q in quoted)


@pytest.mark.container
@pytest.mark.parametrize("case", ["days", "not-writable", "not-searchable"])
def test_the_image_refuses_bad_arguments_in_one_line(image: str, tmp_path: Path, case: str) -> None:
    """From the real image, a bad --days or an --out the user cannot write or even look into:
    one line on stderr, exit 1, no traceback."""
    mounted = tmp_path / "mounted"
    (mounted / "read-only").mkdir(parents=True)
    (mounted / "closed").mkdir(mode=0o700)
    mounted.chmod(0o777)
    (mounted / "read-only").chmod(0o555)
    args, says = {
        "days": (["--days", "-1"], "dask-tls: --days -1: give a number of days above 0"),
        "not-writable": (
            ["--out", "read-only"],
            "dask-tls: --out read-only: not writable for uid 12345",
        ),
        "not-searchable": (
            ["--out", "closed/certs"],
            "dask-tls: closed/certs: Permission denied (this runs as uid 12345: run it as the"
            ' folder\'s owner, -u "$(id -u)")',
        ),
    }[case]
    result = docker(
        "run", "--rm", "-u", "12345", "-v", f"{mounted}:{mounted}", "-w", str(mounted), image,
        "certs", "new", *args, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1, result.stderr
    assert list((mounted / "read-only").iterdir()) == []


def test_client_config_names_a_missing_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --certs or --client: one line naming the file, exit 1, nothing written."""
    out = tmp_path / "dask-tls.yaml"
    assert main(["client-config", "--certs", str(tmp_path), "--out", str(out)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"dask-tls: {tmp_path / 'ca.pem'} does not exist")
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

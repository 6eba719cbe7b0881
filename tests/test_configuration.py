"""What users configure, on the real container: the PEMs as each transport delivers them, the
settings (the dashboard's protocol, a chain at the size limits, a hardened run as another user),
bad inputs (a sample of tests/bad_inputs.py), a /dev/shm shared with other containers or the host,
the workers' scratch space."""

from __future__ import annotations

import base64
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from distributed import Client

from entrypoint.contract import DASHBOARD_PORT
from entrypoint.errors import EXIT_CONFIG
from entrypoint.tls import (
    MAX_AUTHORITIES,
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN_BYTES,
    MAX_CHAIN_CERTIFICATES,
)
from entrypoint.tools.certs import Issued, issue, new_key
from tests.bad_inputs import BY_ID
from tests.client_env import cluster_env
from tests.containers import HARDENED, Container, docker
from tests.material import (
    ClusterMaterial,
    chain_of,
    client_security,
    der_size,
    padding,
    pem_of,
    write_pem_files,
)

pytestmark = pytest.mark.container


def one_line_base64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def test_env_file_and_mounted_secret_with_an_encrypted_key(
    image: str,
    material: ClusterMaterial,
    pems: dict[str, str],
    tmp_path: Path,
) -> None:
    """Certificate and CA as single-line base64 in a `docker run --env-file`, the key encrypted in
    a mounted secret file, its passphrase in a variable: the cluster computes."""
    env_file = tmp_path / "cluster.env"
    env_file.write_text(
        f"DASK_CLUSTER_CERT={one_line_base64(material.cluster.cert_pem)}\n"
        f"DASK_CLUSTER_CA={one_line_base64(material.ca.cert_pem)}\n"
        "DASK_CLUSTER_KEY_FILE=/run/secrets/dask-key\n"
        "NUM_WORKERS=1\n"
    )
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        material.cluster.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"open sesame"),
        )
    )
    key_file.chmod(0o644)  # read by the container's user through the bind mount
    container = Container(
        image,
        {"DASK_CLUSTER_KEY_PASSPHRASE": "open sesame"},
        docker_args=["--env-file", str(env_file), "-v", f"{key_file}:/run/secrets/dask-key:ro"],
    )
    try:
        container.wait_healthy()
        with Client(container.address, security=client_security(pems), timeout="20s") as client:
            assert client.submit(lambda: "ok").result(timeout=30) == "ok"
        assert "-----BEGIN" not in container.logs()
    finally:
        container.remove()


def test_ed25519_certificate_with_literal_newlines(image: str, tmp_path: Path) -> None:
    """An Ed25519 CA and cluster certificate, the PEMs' newlines arriving as literal \\n."""
    ca = issue("ed CA", ca=True, key=new_key("ed25519"))
    cluster = issue("ed cluster", ca, key=new_key("ed25519"))
    env = {
        "DASK_CLUSTER_CERT": cluster.cert_pem.decode().replace("\n", "\\n"),
        "DASK_CLUSTER_KEY": cluster.key_pem.decode().replace("\n", "\\n"),
        "DASK_CLUSTER_CA": ca.cert_pem.decode().replace("\n", "\\n"),
        "NUM_WORKERS": "1",
    }
    files = write_pem_files(tmp_path, ca=ca.cert_pem, cert=cluster.cert_pem, key=cluster.key_pem)
    container = Container(image, env)
    try:
        container.wait_healthy()
        from distributed.security import Security

        sec = Security(
            tls_ca_file=files["ca"], tls_client_cert=files["cert"], tls_client_key=files["key"],
            require_encryption=True,
        )  # fmt: skip
        with Client(container.address, security=sec, timeout="20s") as client:
            assert client.submit(lambda: 7).result(timeout=30) == 7
    finally:
        container.remove()


def test_dashboard_is_plain_http_only_when_asked(image: str, material: ClusterMaterial) -> None:
    """DASHBOARD_PROTOCOL=http serves /health in plain HTTP; HTTPS is refused there."""
    container = Container(
        image, {**material.ca_env(), "NUM_WORKERS": "1", "DASHBOARD_PROTOCOL": "http"}
    )
    try:
        container.wait_healthy()
        port = container.port(DASHBOARD_PORT)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.read() == b"ok"
        with pytest.raises((ssl.SSLError, OSError)):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=10)
    finally:
        container.remove()


def test_read_only_root_and_an_arbitrary_user(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """--read-only --tmpfs /tmp --user 12345:0 still gives a working cluster."""
    container = Container(
        image, {**material.ca_env(), "NUM_WORKERS": "1"},
        docker_args=["--read-only", "--tmpfs", "/tmp", "--user", "12345:0"],
    )  # fmt: skip
    try:
        container.wait_healthy()
        with Client(container.address, security=client_security(pems), timeout="20s") as client:
            assert client.submit(lambda: 3).result(timeout=30) == 3
        assert container.exec("/usr/bin/id", "-u").strip() == "12345"
    finally:
        container.remove()


def chain_at_the_limits(ca: Issued) -> list[Issued]:
    """MAX_CHAIN_CERTIFICATES certificates below `ca`, leaf first, padded in turn until each is
    within 64 bytes of MAX_CERTIFICATE_BYTES or the chain within 64 bytes of MAX_CHAIN_BYTES."""
    plain = chain_of(ca, [0] * MAX_CHAIN_CERTIFICATES)
    room, paddings = MAX_CHAIN_BYTES - sum(map(der_size, plain)), []
    for certificate in plain:
        grow = min(MAX_CERTIFICATE_BYTES - der_size(certificate), room)
        paddings.append(max(0, grow - 64))  # the padding extension's own header: about 45 bytes
        room -= grow
    return chain_of(ca, paddings)


def test_a_chain_just_under_the_limits_computes(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """The longest, largest chain and CA bundle the entrypoint accepts still make TLS peers agree:
    the cluster gets healthy and a client computes (so the limits sit below what OpenSSL takes)."""
    chain = chain_at_the_limits(material.ca)
    sizes = [der_size(certificate) for certificate in chain]
    assert len(chain) == MAX_CHAIN_CERTIFICATES
    assert MAX_CERTIFICATE_BYTES - 128 < max(sizes) <= MAX_CERTIFICATE_BYTES
    assert MAX_CHAIN_BYTES - 256 < sum(sizes) <= MAX_CHAIN_BYTES
    big_ca = issue("big CA", ca=True, extra=padding(MAX_CERTIFICATE_BYTES - 500))
    others = [issue(f"CA {i}", ca=True) for i in range(MAX_AUTHORITIES - 2)]
    env = {
        "DASK_CLUSTER_CERT": pem_of(chain),
        "DASK_CLUSTER_KEY": chain[0].key_pem.decode(),
        "DASK_CLUSTER_CA": pem_of([big_ca, *others, material.ca]),
        "NUM_WORKERS": "1",
    }
    container = Container(image, env)
    try:
        container.wait_healthy()
        with Client(container.address, security=client_security(pems), timeout="20s") as client:
            assert client.submit(lambda: 4).result(timeout=30) == 4
    finally:
        container.remove()


@pytest.mark.parametrize(
    "row",
    ["key-unset", "cert-garbage", "key-of-another-cert", "expired", "cert-of-another-ca",
     "passphrase-wrong", "key-file-missing", "memory-over-the-limit", "memory-infinite",
     "ca-file-device", "scratch-missing"],
)  # fmt: skip
def test_bad_input_stops_the_container_at_once(
    image: str, material: ClusterMaterial, row: str
) -> None:
    """The container exits 78 with the one-line message, no secret text, nothing left running."""
    bad = BY_ID[row]
    container = Container(image, bad.env(material, Path("/nonexistent")))
    try:
        # usually 0.8 to 1.2 s after `docker run`: 60 s is a hang
        assert container.wait_exited(timeout=60) == EXIT_CONFIG
        logs = container.logs()
        assert len(logs.splitlines()) == 1 and bad.says in logs
        assert not any(fragment in logs for fragment in material.secret_fragments())
    finally:
        container.remove()


def our_directories(container: Container) -> list[str]:
    """Every private directory in the container's /dev/shm, its own and any other's."""
    return sorted(container.exec("/bin/sh", "-c", "ls -d /dev/shm/dask-tls*").split())


def computes(container: Container, pems: dict[str, str], answer: int) -> None:
    with Client(container.address, security=client_security(pems), timeout="20s") as client:
        client.wait_for_workers(1, timeout=60)
        assert client.submit(lambda: answer).result(timeout=30) == answer


def test_clusters_sharing_dev_shm_keep_to_their_own_directory(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """Two clusters on one /dev/shm have a directory each and both compute; restarting, then
    stopping the second leaves the first's, whose restarted workers still find their files."""
    env = {**material.ca_env(), "NUM_WORKERS": "1"}
    first = Container(image, env, docker_args=["--ipc=shareable"])
    second: Container | None = None
    try:
        first.wait_healthy()
        second = Container(image, env, docker_args=[f"--ipc=container:{first.name}"])
        second.wait_healthy()
        mine = first.private_dir()
        assert our_directories(first) == sorted([mine, second.private_dir()])
        computes(first, pems, 1)
        computes(second, pems, 2)

        docker("restart", second.name, timeout=60)
        second.wait_healthy()
        assert our_directories(first) == sorted([mine, second.private_dir()])
        docker("stop", second.name, timeout=30)
        assert our_directories(first) == [mine]

        first.kill_worker_group()
        computes(first, pems, 3)
        assert first.state("Health.Status") == "healthy"
        assert "FileNotFoundError" not in first.logs()
        assert "--ipc=host" not in first.logs()  # shared, but not with the host: no warning
    finally:
        if second is not None:
            second.remove()
        first.remove()


def test_the_hosts_dev_shm_is_warned_about_and_cleaned(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """--ipc=host: one warning names the directory in the host's /dev/shm, the cluster computes,
    and docker stop removes the directory from the host."""
    env = {**material.ca_env(), "NUM_WORKERS": "1"}
    container = Container(image, env, docker_args=["--ipc=host"])
    try:
        container.wait_healthy()
        directory = container.private_dir()
        warnings = [line for line in container.logs().splitlines() if " WARNING " in line]
        assert len(warnings) == 1 and "/dev/shm is the host's (--ipc=host)" in warnings[0]
        assert f"the key is in the host's {directory}," in warnings[0]
        assert directory.removeprefix("/dev/shm/") in hosts_dev_shm(image)
        computes(container, pems, 4)
        docker("stop", container.name, timeout=30)
        assert directory.removeprefix("/dev/shm/") not in hosts_dev_shm(image)
    finally:
        docker("stop", container.name, check=False, timeout=30)  # SIGKILL would leave the key
        container.remove()


def hosts_dev_shm(image: str) -> list[str]:
    """The names in the engine host's /dev/shm, as a throwaway --ipc=host container lists them."""
    listing = docker("run", "--rm", "--ipc=host", "--entrypoint", "/bin/ls", image, "/dev/shm")
    return listing.stdout.split()


@pytest.mark.parametrize(
    ("variables", "run"),
    [({"DASK_TEMPORARY_DIRECTORY": "/tmp"}, []), ({}, ["--tmpfs", "/scratch", "--group-add", "0"])],
    ids=["tmp", "tmpfs-scratch"],
)
def test_scratch_on_tmpfs_is_warned_about(
    image: str, client_certs: Path, variables: dict[str, str], run: list[str]
) -> None:
    """Spilling into the /tmp tmpfs, or a tmpfs on /scratch (Docker makes it root's, 0770: hence
    --group-add 0): the cluster starts, and one warning line says RAM and the fix."""
    env = {**cluster_env(client_certs), **variables}
    container = Container(image, env, docker_args=[*HARDENED, *run])
    try:
        container.wait_healthy()
        warnings = [line for line in container.logs().splitlines() if "tmpfs (RAM)" in line]
    finally:
        container.remove()
    assert len(warnings) == 1
    assert "WARNING" in warnings[0] and "-v dask-scratch:/scratch" in warnings[0]


@pytest.mark.parametrize("group_zero", [False, True], ids=["own-group", "group-add-0"])
def test_scratch_must_be_writable_by_the_user(
    image: str, client_certs: Path, group_zero: bool
) -> None:
    """--user 12345:12345 cannot write the image's /scratch (uid 10001, group 0): exit 78 with
    one line and the fix; with --group-add 0 as well, the cluster starts."""
    run = [*HARDENED, "--user", "12345:12345", *(["--group-add", "0"] if group_zero else [])]
    container = Container(image, cluster_env(client_certs), docker_args=run)
    try:
        if group_zero:
            container.wait_healthy()
            return
        assert container.wait_exited(timeout=60) == EXIT_CONFIG
        [line] = container.logs().splitlines()
    finally:
        container.remove()
    assert "DASK_TEMPORARY_DIRECTORY: the workers' scratch space /scratch is not writable" in line
    assert "uid 12345 gid 12345" in line and "--group-add 0" in line

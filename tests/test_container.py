"""The real image on the real Docker engine, used by real distributed clients over TLS."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from distributed.security import Security

from entrypoint.contract import DASHBOARD_PORT, UID
from entrypoint.errors import EXIT_CONFIG
from entrypoint.tls import (
    MAX_AUTHORITIES,
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN_BYTES,
    MAX_CHAIN_CERTIFICATES,
)
from entrypoint.tools.certs import Issued, issue
from tests.bad_inputs import BY_ID
from tests.containers import Container, docker, unexpected_tracebacks
from tests.material import ClusterMaterial, chain_of, client_security, der_size, padding, pem_of

pytestmark = pytest.mark.container
REFUSED = (OSError, TimeoutError)


@pytest.fixture
def client(cluster: Container, pems: dict[str, str]) -> Iterator[Client]:
    with Client(cluster.address, security=client_security(pems), timeout="20s") as connected:
        yield connected


def test_the_seeds_client_code_computes(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """The blog's single self-signed certificate and its exact Security(...) call work unchanged,
    and the workers are sized as asked."""
    env = {
        **material.seed_env(),
        "NUM_WORKERS": "2",
        "THREADS_PER_WORKER": "2",
        "MEMORY_PER_WORKER": "1",
    }
    container = Container(image, env)
    try:
        container.wait_healthy()
        sec = Security(
            tls_ca_file=pems["seed"],
            tls_client_cert=pems["seed"],
            tls_client_key=pems["seed_key"],
            require_encryption=True,
        )
        with Client(container.address, security=sec, timeout="20s") as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
            workers = client.scheduler_info()["workers"].values()
            assert [(w["nthreads"], w["memory_limit"]) for w in workers] == [(2, 10**9)] * 2
    finally:
        container.remove()


def test_ca_issued_client_computes_across_all_workers(client: Client) -> None:
    """A client certificate from the cluster's CA computes, on every worker."""
    assert client.gather(client.map(lambda x: x * x, range(50))) == [x * x for x in range(50)]
    assert len(client.run(os.getpid)) == 2


@pytest.mark.parametrize("who", ["another-ca", "plain-tcp"])
def test_strangers_are_refused(cluster: Container, pems: dict[str, str], who: str) -> None:
    """A client with a certificate from another CA, or on plain tcp://, is refused."""
    address, security = {
        "another-ca": (cluster.address, client_security(pems, "intruder")),
        "plain-tcp": (f"tcp://127.0.0.1:{cluster.port()}", Security()),
    }[who]
    with pytest.raises(REFUSED):
        Client(address, security=security, timeout="3s")


def test_tls_without_a_client_certificate_is_refused(
    cluster: Container, pems: dict[str, str]
) -> None:
    """A TLS peer that trusts the CA but shows no certificate gets not one byte of the protocol."""
    context = ssl.create_default_context(cafile=pems["ca"])
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", cluster.port()), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        try:
            received = tls.recv(1)
        except (ssl.SSLError, ConnectionError):
            received = b""
    assert received == b""


def test_dashboard_is_https_with_the_clusters_certificate(
    cluster: Container, pems: dict[str, str]
) -> None:
    """Port 8787 speaks HTTPS with a certificate the cluster's CA verifies; /health answers a client
    that shows its certificate."""
    context = ssl.create_default_context(cafile=pems["ca"])
    context.load_cert_chain(pems["client"], pems["client_key"])
    url = f"https://localhost:{cluster.port(DASHBOARD_PORT)}/health"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        assert response.read() == b"ok"


def test_private_files_are_private(cluster: Container) -> None:
    """The key material sits on tmpfs: a 0700 directory of 0600 files of the runtime user, the
    only one of ours in /dev/shm, named after the container's mount namespace."""
    directory = cluster.private_dir()
    listing = cluster.exec("/bin/sh", "-c", f"stat -c '%a %u %n' /dev/shm/dask-tls* {directory}/*")
    modes = {line.split()[2]: line.split()[:2] for line in listing.splitlines()}
    assert modes.pop(directory) == ["700", f"{UID}"]
    assert set(modes) == {
        f"{directory}/{n}" for n in ("ca.pem", "cert.pem", "key.pem", "plan.json")
    }
    assert all(mode == ["600", f"{UID}"] for mode in modes.values())


def test_no_process_environment_holds_secret_text(
    cluster: Container, material: ClusterMaterial
) -> None:
    """No process, PID 1 included, has the PEM (or a piece of its key) in /proc/<pid>/environ."""
    environs = cluster.exec(
        "/bin/sh",
        "-c",
        'for f in /proc/[0-9]*/environ; do echo "== $f"; tr "\\0" "\\n" < "$f"; done',
    )
    assert "== /proc/1/environ" in environs
    leaks = [f for f in material.secret_fragments() if f in environs]
    assert leaks == []


def test_logs_are_tagged_by_role_and_clean(cluster: Container) -> None:
    """Each process logs to the container's output tagged with its role; no error, no secret."""
    logs = cluster.logs()
    for role in ("entrypoint[1]", "supervisor[1]", "scheduler[", "worker["):
        assert role in logs
    assert unexpected_tracebacks(logs) == [] and "-----BEGIN" not in logs


def test_healthcheck_is_mutual_tls(cluster: Container) -> None:
    """The HEALTHCHECK says healthy only through its mutual-TLS query of the scheduler, and when
    the served certificate expires."""
    log = docker("inspect", "-f", "{{json .State.Health.Log}}", cluster.name).stdout
    assert "healthy: role all, 2 workers; the cluster certificate expires on" in log


def test_a_killed_worker_is_replaced(cluster: Container, client: Client) -> None:
    """SIGKILL one worker process: its nanny starts another; the cluster is back to 2 workers."""
    before = client.run(os.getpid)
    victim_address, victim_pid = next(iter(before.items()))
    cluster.exec("/bin/sh", "-c", f"kill -KILL {victim_pid}")

    def back_to_two() -> bool:
        workers = set(client.scheduler_info()["workers"])
        return len(workers) == 2 and victim_address not in workers

    cluster.wait_until(back_to_two, "a replacement worker", timeout=60)
    assert client.submit(lambda: 1).result(timeout=30) == 1
    assert cluster.zombies() == []


def test_a_killed_worker_group_is_restarted(fresh: Container, pems: dict[str, str]) -> None:
    """SIGKILL the `dask worker` process itself: the supervisor restarts it, back to 2 workers."""
    fresh.kill_worker_group()
    with Client(fresh.address, security=client_security(pems), timeout="20s") as client:
        client.wait_for_workers(2, timeout=60)
        assert client.submit(lambda: 2).result(timeout=30) == 2
    assert fresh.zombies() == []  # the orphaned worker processes were reaped


def test_docker_stop_exits_0_quickly(fresh: Container) -> None:
    """docker stop: workers then scheduler stop, exit code 0, far inside the 10 s grace."""
    started = time.monotonic()
    docker("stop", fresh.name, timeout=30)
    elapsed = time.monotonic() - started
    assert fresh.state("ExitCode") == "0"
    assert elapsed < 5, f"docker stop took {elapsed:.1f} s"
    logs = fresh.logs()
    assert "SIGTERM received" in logs, logs
    assert "SIGKILL" not in logs and unexpected_tracebacks(logs) == [], logs
    assert logs.index("workers[") < logs.rindex("scheduler[")


def test_scheduler_death_ends_the_container_non_zero(fresh: Container) -> None:
    """SIGKILL the scheduler: the container exits non-zero within 5 s, so a restart policy acts."""
    pid = fresh.pid_of("distributed.cli.dask_scheduler")
    fresh.exec("/bin/sh", "-c", f"kill -KILL {pid}")
    assert fresh.wait_exited(timeout=5) != 0
    assert "the cluster is gone" in fresh.logs()


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
        assert container.wait_exited(timeout=20) == EXIT_CONFIG
        logs = container.logs()
        assert len(logs.splitlines()) == 1 and bad.says in logs
        assert not any(fragment in logs for fragment in material.secret_fragments())
    finally:
        container.remove()


def test_image_holds_no_key_and_its_history_no_secret(image: str) -> None:
    """No private key file anywhere in the image (searched as root), no secret in its history."""
    history = docker("history", "--no-trunc", image).stdout
    assert "PRIVATE KEY" not in history and "pip-ca" not in history.replace("id=pip-ca", "")
    found = docker(
        "run", "--rm", "--user", "0", "--entrypoint", "/bin/sh", image, "-c",
        "grep -rlIE '^-----BEGIN [A-Z ]*PRIVATE KEY-----$' /opt /etc /home /root /usr; true",
    ).stdout  # fmt: skip
    assert found == ""


def test_structure(image: str) -> None:
    """container-structure-test's checks in docker/structure-test*.yaml pass on the image."""
    docker_dir = Path(__file__).parents[1] / "docker"
    configs = [docker_dir / "structure-test.yaml", docker_dir / "structure-test-root.yaml"]
    binary = Path(sys.executable).parent / "container-structure-test"
    result = subprocess.run(
        [str(binary), "test", "--image", image, *(f"--config={c}" for c in configs)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failures:    0" in result.stdout

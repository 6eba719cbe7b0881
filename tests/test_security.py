"""No open door: strangers (another CA, no certificate, plain tcp://) are refused; every HTTPS
listener asks for a certificate from the cluster's CA, from the first moment; one TLS floor for all
ports; stalled handshakes are dropped; the key material is private, in no process's environment and
nowhere in the image. (The TLS profile as a scanner sees it: test_security_tls_profile.py; the
dashboard in a real browser: test_security_browser.py.)"""

from __future__ import annotations

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

from entrypoint.contract import DASHBOARD_PORT, SCHEDULER_PORT, UID
from tests.containers import Container, docker
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container
REFUSED = (OSError, TimeoutError)
# Run inside the container: a TLS client with no certificate asks each port for /health and says
# whether an HTTP answer came back. In TLS 1.3 the server's refusal arrives after the handshake.
# Only a refusal is caught (an alert, a reset); a timeout fails the probe with its traceback.
PROBE = """
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
for port in sys.argv[1:]:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET /health HTTP/1.0\\r\\n\\r\\n")
                answer = tls.recv(64)
        print(port, "ANSWERED" if answer else "refused")
    except (ssl.SSLError, ConnectionResetError) as error:
        print(port, "refused", type(error).__name__)
"""


def http_answer(host: str, port: int, context: ssl.SSLContext, timeout: float = 5) -> bytes:
    """What an HTTPS GET /health gets back; raises OSError when the server refuses."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return tls.recv(256)


def no_certificate(pems: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pems["ca"])


def with_certificate(pems: dict[str, str], tls_max: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pems["ca"])
    context.load_cert_chain(pems["client"], pems["client_key"])
    if tls_max is not None:
        context.maximum_version = tls_max
    return context


@pytest.fixture
def starting(image: str, material: ClusterMaterial) -> Iterator[Container]:
    container = Container(image, {**material.ca_env(), "NUM_WORKERS": "2"})
    try:
        yield container
    finally:
        container.remove()


@pytest.mark.parametrize("who", ["another-ca", "plain-tcp"])
def test_strangers_are_refused(cluster: Container, pems: dict[str, str], who: str) -> None:
    """A client with a certificate from another CA, or on plain tcp://, is refused."""
    address, security = {
        "another-ca": (cluster.address, client_security(pems, "intruder")),
        "plain-tcp": (f"tcp://127.0.0.1:{cluster.port()}", Security()),
    }[who]
    refusals_before = refusals(cluster)
    with pytest.raises(REFUSED):
        Client(address, security=security, timeout="3s")
    # refused by the scheduler's TLS, not merely unanswered: it logs the failed handshake (another
    # CA), or drops the plain-TCP peer that never starts one
    cluster.wait_until(lambda: refusals(cluster) > refusals_before, "a refusal logged")


def refusals(cluster: Container) -> int:
    """The scheduler's log lines for a failed TLS handshake or a peer that never began one."""
    logs = cluster.logs()
    return logs.count("TLS handshake failed") + logs.count("no TLS handshake from")


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


def test_dashboard_never_answers_without_a_certificate(
    starting: Container, pems: dict[str, str]
) -> None:
    """From `docker run` until healthy, 8787 gives no HTTP answer to a client with no certificate;
    once up, a client certificate from the cluster's CA gets /health."""
    ip, answered, refused = starting.ip, [], 0
    deadline = time.monotonic() + 120  # only against a hang
    while starting.state("Health.Status") != "healthy" and time.monotonic() < deadline:
        try:
            answered.append(http_answer(ip, DASHBOARD_PORT, no_certificate(pems), timeout=2))
        except OSError:
            refused += 1
        assert starting.running(), starting.logs()
    assert answered == [] and refused > 0
    assert http_answer(ip, DASHBOARD_PORT, with_certificate(pems)).startswith(b"HTTP/1.1 200")


def test_no_https_port_answers_without_a_certificate(
    cluster: Container, pems: dict[str, str]
) -> None:
    """The dashboard and every worker's HTTP port, probed from inside the container."""
    with Client(cluster.address, security=client_security(pems), timeout="20s") as client:
        workers = client.scheduler_info()["workers"].values()
        ports = [DASHBOARD_PORT, *(w["services"]["dashboard"] for w in workers)]
    assert len(ports) == 3
    output = cluster.exec("/opt/venv/bin/python", "-c", PROBE, *map(str, ports))
    assert sorted(line.split()[:2] for line in output.splitlines()) == sorted(
        [str(port), "refused"] for port in ports
    ), output


def test_a_proxy_in_front_can_relax_it(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """HTTP_CLIENT_CERT=none: HTTPS without a client certificate answers, with a warning line."""
    container = Container(
        image, {**material.ca_env(), "NUM_WORKERS": "1", "HTTP_CLIENT_CERT": "none"}
    )
    try:
        container.wait_healthy()
        assert http_answer(container.ip, DASHBOARD_PORT, no_certificate(pems)).startswith(
            b"HTTP/1.1 200"
        )
        assert "HTTP_CLIENT_CERT=none: the dashboard" in container.logs()
    finally:
        container.remove()


def test_one_setting_makes_every_port_tls_1_3_only(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """With the TLS floor at 1.3, a TLS 1.2 client holding a good certificate is refused on 8786 and
    8787; a TLS 1.3 client is served."""
    env = {
        **material.ca_env(),
        "NUM_WORKERS": "1",
        "DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION": "1.3",
    }
    container = Container(image, env)
    try:
        container.wait_healthy()
        for port in (SCHEDULER_PORT, DASHBOARD_PORT):
            with pytest.raises(ssl.SSLError, match=r"(?i)version"):
                http_answer(container.ip, port, with_certificate(pems, ssl.TLSVersion.TLSv1_2))
        assert http_answer(container.ip, DASHBOARD_PORT, with_certificate(pems)).startswith(
            b"HTTP/1.1 200"
        )
    finally:
        container.remove()


# Each TCP socket of the container's network namespace: /proc/net/tcp and tcp6 list its remote
# address (hex "ADDR:PORT") in the third column and its inode in the tenth.
SOCKETS = "cat /proc/net/tcp /proc/net/tcp6"
SOCKET_FDS = "readlink /proc/{pid}/fd/*"


def scheduler_peer_ports(container: Container) -> set[int]:
    """The remote ports of the TCP connections the scheduler process holds open: the sockets
    among its file descriptors, looked up by inode in the container's socket tables. Pooled
    connections and the files it opens come and go; these are the stalled peers' own."""
    pid = container.pid_of("scheduler")
    fds = container.exec("/bin/sh", "-c", SOCKET_FDS.format(pid=pid), check=False).split()
    inodes = {fd[len("socket:[") : -1] for fd in fds if fd.startswith("socket:[")}
    ports = set()
    for line in container.exec("/bin/sh", "-c", SOCKETS).splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[9] in inodes:
            ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_stalled_handshakes_are_dropped(fresh: Container, pems: dict[str, str]) -> None:
    """200 connections that send 6 bytes of a ClientHello and stop: the scheduler holds every one,
    a real client still computes meanwhile; all are closed within the 10 s limit plus slack, and
    the scheduler's process holds none of their sockets afterwards."""

    def compute() -> None:
        with Client(fresh.address, security=client_security(pems), timeout="20s") as client:
            assert sum(client.gather(client.map(lambda x: x + 1, range(100)))) == 5050

    stalled: list[socket.socket] = []
    held: set[int] = set()

    def all_held() -> bool:
        held.update(scheduler_peer_ports(fresh) & ports)
        return held == ports

    try:
        for _ in range(200):
            sock = socket.create_connection((fresh.ip, SCHEDULER_PORT), timeout=5)
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # a TLS record header and one byte: no more
            stalled.append(sock)
        ports = {sock.getsockname()[1] for sock in stalled}
        # each is held for 10 s from its accept: polls a fraction of that apart see every one
        fresh.wait_until(all_held, "the scheduler holding every stalled connection", 30)
        compute()
        fresh.wait_until(
            lambda: all(closed_by_peer(sock) for sock in stalled), "stalled handshakes closed", 60
        )
        fresh.wait_until(
            lambda: not scheduler_peer_ports(fresh) & ports, "the scheduler letting go of them", 30
        )
    finally:
        for sock in stalled:
            sock.close()
    logs = fresh.logs()
    assert logs.count("no TLS handshake from") == 200 and "Traceback" not in logs


def test_forced_settings_cannot_be_overridden(image: str, material: ClusterMaterial) -> None:
    """A lower-case spelling of the dashboard's TLS key is refused at start (exit 78, one line)."""
    env = {**material.ca_env(), "DASK_distributed__scheduler__dashboard__tls__cert": ""}
    container = Container(image, env)
    try:
        assert container.wait_exited(timeout=30) == 78
        logs = container.logs()
        assert len(logs.splitlines()) == 1 and "which this image fixes" in logs, logs
    finally:
        container.remove()


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

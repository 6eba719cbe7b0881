"""Growing past one host: docker/compose.yaml on the real engine, a scheduler container and two
worker containers on a Docker network, a client from the host, an intruder on the network."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from distributed import Client

from entrypoint.contract import SCHEDULER_PORT
from entrypoint.tools.certs import issue
from entrypoint.tools.cli import main
from entrypoint.tools.client import connect
from tests.client_env import copy_of_project, make
from tests.containers import docker, wait_for_log, wait_for_state

pytestmark = pytest.mark.container
# Run on the compose network: for each address, a client with another CA's certificate and a TLS
# client with none; one line per attempt, "ADDRESS WAY OUTCOME". Only the refusals a TLS server
# gives are caught (a failed handshake, an alert, a reset, an empty read): an answer prints
# ACCEPTED, anything else (a timeout, unreadable files) fails the probe with its traceback.
INTRUDER = """
import asyncio, ssl, socket, sys
from distributed.comm.core import CommClosedError
from distributed.core import rpc
from distributed.security import Security
sec = Security(tls_ca_file="/intruder/ca.pem", tls_client_cert="/intruder/cert.pem",
               tls_client_key="/intruder/key.pem", require_encryption=True)
async def with_foreign_certificate(address):
    connection_args = sec.get_connection_args("client")
    try:
        async with rpc(address, connection_args=connection_args, timeout=5) as peer:
            await asyncio.wait_for(peer.identity(), 5)
    except CommClosedError as error:  # the handshake failed (a timeout is no refusal)
        return f"refused {type(error).__name__}"
    return "ACCEPTED"
def without_certificate(address):
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile="/intruder/ca.pem")
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                data = tls.recv(1)
        except (ssl.SSLError, ConnectionResetError) as error:
            return f"refused {type(error).__name__}"
    return "ACCEPTED" if data else "refused closed"
for address in sys.argv[1:]:
    print(address, "foreign", asyncio.run(with_foreign_certificate(address)))
    print(address, "none", without_certificate(address))
"""


@dataclass
class Deployment:
    """docker/compose.yaml in a copy of the checkout, with the certificates `make certs` made
    there (as `make run` does), found where compose.yaml looks by default: the README's way."""

    project: str
    env: dict[str, str]
    checkout: Path

    @property
    def certs(self) -> Path:
        return self.checkout / "certs"

    def compose(self, *args: str) -> str:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
        result = subprocess.run(
            ["docker-compose", "-f", "docker/compose.yaml", "-p", self.project, *args],
            cwd=self.checkout, env={**environ, **self.env}, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.project}_{service}_{index}"

    def ip(self, service: str, index: int = 1) -> str:
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return docker("inspect", "-f", template, self.container(service, index)).stdout.strip()

    def client(self) -> Client:
        return connect(f"tls://{self.ip('scheduler')}:{SCHEDULER_PORT}", self.certs, timeout="30s")


@pytest.fixture(scope="module")
def deployment(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Workers first (they must wait), then the scheduler; ports on loopback, any free ones."""
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is missing: `make test` installs it (docker/system-tools.sh)")
    checkout = copy_of_project(tmp_path_factory.mktemp("checkout"))
    make(checkout, "certs", f"IMAGE={image}")
    env = {
        "IMAGE": image,
        "DASK_SCHEDULER_PORT": "127.0.0.1:0",
        "DASK_DASHBOARD_PORT": "127.0.0.1:0",
    }
    found = Deployment(f"dasktls{os.getpid()}", env, checkout)
    try:
        found.compose("up", "-d", "--no-deps", "--scale", "worker=2", "worker")
        wait_for_log(found.container("worker", 1), "waiting for the scheduler")
        found.compose("up", "-d", "--no-deps", "scheduler")
        yield found
    finally:
        found.compose("down", "-v", "--remove-orphans", "--timeout", "5")


# What `make client`'s environment does: dask reads the config client-config wrote, and a plain
# Client("tls://localhost:PORT") connects with the client certificate it names.
PLAIN_CLIENT = """
import socket, sys
from distributed import Client
with Client(sys.argv[1], timeout="30s") as client:
    client.wait_for_workers(2, timeout=90)
    hosts = set(client.run(socket.gethostname).values())
    print(len(hosts), client.submit(sum, [1, 2, 3]).result(timeout=30))
"""


def test_a_client_set_up_as_make_client_does_computes_on_localhost(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The config `make client` writes for certs/client.pem (client-config), and nothing else:
    Client("tls://localhost:PORT"), PORT the scheduler's published loopback port, computes on
    both worker containers."""
    config = tmp_path / "dask" / "dask-tls.yaml"
    assert main(["client-config", "--certs", str(deployment.certs), "--out", str(config)]) == 0
    # docker-proxy accepts before the scheduler listens, and distributed does not retry the
    # stream it then closes ("IOStream is not idle"): connect once the health check says it is up
    scheduler = deployment.container("scheduler")
    wait_for_state(scheduler, "{{.State.Health.Status}}", "healthy")
    published = docker("port", scheduler, f"{SCHEDULER_PORT}/tcp").stdout
    [port] = {line.rsplit(":", 1)[1] for line in published.split()}
    assert all(line.startswith(("127.0.0.1:", "[::1]:")) for line in published.split())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_CLIENT, f"tls://localhost:{port}"], capture_output=True,
        text=True, timeout=180, env={**environ, "DASK_CONFIG": str(config.parent)},
    )  # fmt: skip
    assert result.stdout.split() == ["2", "6"], result.stdout + result.stderr


def test_by_default_compose_publishes_on_loopback(deployment: Deployment) -> None:
    """Left to its defaults, as `make run` does, compose.yaml publishes both ports on 127.0.0.1
    only, and reads the env file from certs/."""
    config = subprocess.run(
        ["docker-compose", "-f", "docker/compose.yaml", "config"], cwd=deployment.checkout,
        env={k: v for k, v in os.environ.items() if not k.startswith("DASK_")},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    published = [line.strip() for line in config.splitlines() if line.strip().startswith("- 1")]
    assert published == ["- 127.0.0.1:8786:8786/tcp", "- 127.0.0.1:8787:8787/tcp"], config
    assert "DASK_CLUSTER_KEY" in config  # the env file's variables, read from certs/cluster.env


def test_client_computes_across_worker_containers(deployment: Deployment) -> None:
    """A host client's work runs on both worker containers, none of it on the scheduler's."""
    with deployment.client() as client:
        client.wait_for_workers(2, timeout=90)
        hosts = set(client.run(socket.gethostname).values())
        assert len(hosts) == 2
        assert sum(client.gather(client.map(lambda x: x + 1, range(100)))) == 5050


def test_direct_to_workers_from_the_docker_host(deployment: Deployment) -> None:
    """Worker containers listen on their network's address, which the Docker host reaches: a
    host client scatters straight to the workers and gathers straight from them (README)."""
    with connect(
        f"tls://{deployment.ip('scheduler')}:{SCHEDULER_PORT}", deployment.certs, timeout="30s",
        direct_to_workers=True,
    ) as client:  # fmt: skip
        client.wait_for_workers(2, timeout=90)
        workers = client.scheduler_info()["workers"]
        assert not any(address.startswith("tls://127.") for address in workers)
        futures = client.scatter(list(range(20)), direct=True)
        assert client.gather(futures, direct=True) == list(range(20))


def test_intruder_is_refused_by_scheduler_and_every_worker(
    deployment: Deployment, image: str, tmp_path: Path
) -> None:
    """An intruder on the network, trusting the cluster's (public) CA certificate but holding a
    certificate from another CA, or none, is refused by the scheduler, every worker, every nanny."""
    with deployment.client() as client:
        client.wait_for_workers(2, timeout=90)
        workers = client.scheduler_info()["workers"]
    addresses = [
        f"tls://scheduler:{SCHEDULER_PORT}",
        *workers,
        *(w["nanny"] for w in workers.values()),
    ]
    other = issue("intruder", issue("intruder CA", ca=True))
    for name, data in (("ca.pem", (deployment.certs / "ca.pem").read_bytes()),
                       ("cert.pem", other.cert_pem), ("key.pem", other.key_pem)):  # fmt: skip
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).chmod(0o644)  # a throwaway key, read by the container's user
    tmp_path.chmod(0o755)  # mounted as /intruder: the container's user must enter it
    network = f"{deployment.project}_default"
    probe = docker(
        "run", "--rm", "--network", network, "-v", f"{tmp_path}:/intruder:ro",
        "--entrypoint", "/opt/venv/bin/python", image, "-c", INTRUDER, *addresses, timeout=120,
        check=False,
    )  # fmt: skip
    output = probe.stdout
    assert probe.returncode == 0, output + probe.stderr
    outcomes = {tuple(line.split()[:2]): line.split()[2] for line in output.splitlines()}
    expected = {(address, way) for address in addresses for way in ("foreign", "none")}
    assert set(outcomes) == expected and len(expected) == 2 * 5, output
    for (address, way), outcome in outcomes.items():
        assert outcome == "refused", f"{address} {way}: {outcome}\n{output}"


def test_workers_come_back_when_the_scheduler_restarts(deployment: Deployment) -> None:
    """Restart the scheduler container: the worker containers reconnect on their own."""
    docker("restart", deployment.container("scheduler"), timeout=60)
    wait_for_log(deployment.container("worker", 1), "once the scheduler answers")
    with deployment.client() as client:
        client.wait_for_workers(2, timeout=120)
        assert client.submit(lambda: 42).result(timeout=30) == 42

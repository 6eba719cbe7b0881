"""Clients and the cluster's life: a client with other versions is refused at connect and cannot
take the cluster down; retire_workers keeps N workers; client.shutdown() ends it with exit 0."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from distributed import Client

from tests.containers import Container
from tests.material import client_security

pytestmark = pytest.mark.container
ROOT = Path(__file__).parents[1]
PYENV = Path.home() / ".pyenv" / "versions"
DISTRIBUTED = version("distributed")  # the lock's, as in the image
# The client's side: connect, compute, print what happened in one line.
CONNECT = """
import sys
from distributed import Client
from distributed.security import Security
ca, cert, key, address = sys.argv[1:]
sec = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
try:
    with Client(address, security=sec, timeout="20s") as client:
        print("computed", client.submit(sum, [1, 2, 3]).result(timeout=30))
except Exception as error:
    print(type(error).__name__, error)
"""


def client_environment(name: str, python: Path, *packages: str) -> Path:
    """A venv under .cache/ (made once, reused) with `packages` from PyPI; its python."""
    if not python.exists():
        pytest.fail(f"{python} is missing: this test needs another Python (pyenv)")
    home = ROOT / ".cache" / "clients" / name
    if not (home / "ok").exists():
        commands: list[list[str | Path]] = [
            [python, "-m", "venv", "--clear", home],
            [home / "bin" / "python", "-m", "pip", "install", "--quiet", *packages],
        ]
        for command in commands:
            subprocess.run(command, check=True, timeout=600, capture_output=True)
        (home / "ok").touch()
    return home / "bin" / "python"


@pytest.fixture(
    params=[
        ("python3.13", PYENV / "3.13.0" / "bin" / "python3", f"distributed=={DISTRIBUTED}"),
        ("distributed-2026.7.1", Path(sys.executable), "distributed==2026.7.1"),
    ],
    ids=lambda p: p[0],
)
def mismatched(request: pytest.FixtureRequest) -> tuple[str, Path]:
    name, python, package = request.param
    return name, client_environment(name, python, package)


def test_a_mismatched_client_is_refused_and_the_cluster_carries_on(
    fresh: Container, pems: dict[str, str], mismatched: tuple[str, Path]
) -> None:
    """A client on another Python minor version or distributed release is refused at connect with
    both versions named; a matching client connected before keeps computing on the same workers."""
    name, python = mismatched
    with Client(fresh.address, security=client_security(pems), timeout="20s") as client:
        workers = set(client.scheduler_info()["workers"])
        result = subprocess.run(
            [python, "-c", CONNECT, pems["ca"], pems["client"], pems["client_key"], fresh.address],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        said = result.stdout.strip()
        assert said.startswith("ImportError refused: this client runs"), (
            result.stdout + result.stderr
        )
        expected = (
            "Python 3.13 (the cluster: 3.11)"
            if name == "python3.13"
            else (f"distributed 2026.7.1 (the cluster: {DISTRIBUTED})")
        )
        assert expected in said
        for _ in range(3):
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        assert set(client.scheduler_info()["workers"]) == workers
    assert "refused: runs" in fresh.logs() and "exited" not in fresh.logs()


def test_retired_workers_are_replaced(fresh: Container, pems: dict[str, str]) -> None:
    """retire_workers moves the worker's data away and closes it; its nanny starts a fresh one, so
    the container keeps N workers and stays healthy."""
    with Client(fresh.address, security=client_security(pems), timeout="20s") as client:
        data = client.scatter(list(range(20)))
        before = set(client.scheduler_info()["workers"])
        retired = client.retire_workers(n=1)
        assert len(retired) == 1

        def replaced() -> bool:
            now = set(client.scheduler_info()["workers"])
            return len(now) == 2 and not set(retired) & now

        fresh.wait_until(replaced, "a fresh worker in the retired one's place")
        assert client.gather(data) == list(range(20))
        assert len(before & set(client.scheduler_info()["workers"])) == 1
    fresh.wait_until(lambda: fresh.state("Health.Status") == "healthy", "healthy after retiring")


def test_client_shutdown_ends_the_container_with_0(fresh: Container, pems: dict[str, str]) -> None:
    """client.shutdown() is a deliberate end: workers then scheduler stop, exit code 0."""
    client = Client(fresh.address, security=client_security(pems), timeout="20s")
    client.shutdown()
    assert fresh.wait_exited(timeout=60) == 0
    assert "stopped: the scheduler was shut down (client.shutdown()), exit code 0" in fresh.logs()

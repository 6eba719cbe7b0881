"""Faults on the real container: signals at awkward moments, restarts, zombies."""

from __future__ import annotations

import contextlib
import time

import pytest
from distributed import Client

from tests.containers import Container, docker
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container


def test_sigterm_during_start_up_exits_cleanly(image: str, material: ClusterMaterial) -> None:
    """SIGTERM a moment after `docker run`: exit 0 within the grace, no error, no SIGKILL."""
    container = Container(image, {**material.ca_env(), "NUM_WORKERS": "2"})
    try:
        time.sleep(0.3)
        docker("kill", "--signal", "TERM", container.name)
        assert container.wait_exited(timeout=10) == 0, container.logs()
        logs = container.logs()
        assert "SIGTERM received" in logs and "SIGKILL" not in logs, logs
    finally:
        container.remove()


def test_docker_restart_comes_back_with_all_workers(fresh: Container, pems: dict[str, str]) -> None:
    """`docker restart` (a SIGKILL first, for the worst case) comes back to N workers."""
    docker("kill", fresh.name)
    docker("restart", fresh.name)
    # until it listens, docker-proxy accepts and drops connections, which distributed's
    # client does not retry; the health check proves the scheduler is back
    fresh.wait_healthy()
    with Client(fresh.address, security=client_security(pems), timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
        assert client.submit(lambda: 5).result(timeout=30) == 5


def test_docker_stop_during_a_computation(fresh: Container, pems: dict[str, str]) -> None:
    """Stop while every worker is busy: exit 0 inside Docker's 10 s grace, no zombie on the way."""
    client = Client(fresh.address, security=client_security(pems), timeout="20s")
    busy = client.map(time.sleep, [60] * 4, pure=False)
    fresh.wait_until(lambda: sum(len(p) for p in client.processing().values()) >= 2, "busy workers")
    assert fresh.zombies() == []
    started = time.monotonic()
    docker("stop", fresh.name, timeout=30)
    elapsed = time.monotonic() - started
    del busy
    with contextlib.suppress(OSError, ValueError):  # its cluster is gone, as intended
        client.close(timeout=2)
    assert fresh.state("ExitCode") == "0", fresh.logs()
    assert elapsed < 9, f"docker stop took {elapsed:.1f} s"

"""A cluster's life on the real engine: it starts, computes on every worker, reports itself healthy
over mutual TLS and logs cleanly; it ends with exit 0 however it is asked to: `docker stop`, also
mid-computation, a SIGTERM during start-up, `client.shutdown()`."""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from distributed import Client
from distributed.security import Security

from tests.containers import Container, docker, unexpected_tracebacks
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container


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


def test_healthcheck_is_mutual_tls(cluster: Container) -> None:
    """The HEALTHCHECK says healthy only through its mutual-TLS query of the scheduler, and when
    the served certificate expires."""
    log = docker("inspect", "-f", "{{json .State.Health.Log}}", cluster.name).stdout
    assert "healthy: role all, 2 workers; the cluster certificate expires on" in log


def test_logs_are_tagged_by_role_and_clean(cluster: Container) -> None:
    """Each process logs to the container's output tagged with its role; no error, no secret."""
    logs = cluster.logs()
    for role in ("entrypoint[1]", "supervisor[1]", "scheduler[", "worker["):
        assert role in logs
    assert unexpected_tracebacks(logs) == [] and "-----BEGIN" not in logs


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


def test_client_shutdown_ends_the_container_with_0(fresh: Container, pems: dict[str, str]) -> None:
    """client.shutdown() is a deliberate end: workers then scheduler stop, exit code 0."""
    client = Client(fresh.address, security=client_security(pems), timeout="20s")
    client.shutdown()
    assert fresh.wait_exited(timeout=60) == 0
    assert "stopped: the scheduler was shut down (client.shutdown()), exit code 0" in fresh.logs()

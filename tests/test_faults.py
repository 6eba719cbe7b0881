"""Faults on the real container: a killed worker and a killed `dask worker` come back with no zombie
left, a killed scheduler ends the container non-zero, `docker restart` after a SIGKILL comes back
to N workers, retired workers are replaced; with one worker, `client.restart()` and the nanny's
kill of a worker past its memory limit still bring a fresh worker process."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from distributed import Client
from distributed.scheduler import KilledWorker

from tests.containers import Container, docker, healthy_container
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container


@pytest.fixture
def one_worker(image: str, material: ClusterMaterial) -> Iterator[Container]:
    """A cluster of one worker of 400 MiB, whose tasks are not retried after a worker dies."""
    env = {
        **material.ca_env(),
        "NUM_WORKERS": "1",
        "MEMORY_PER_WORKER": "400MiB",
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    }
    yield from healthy_container(image, env)


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


def test_scheduler_death_ends_the_container_non_zero(fresh: Container) -> None:
    """SIGKILL the scheduler: the container exits non-zero on its own, so a restart policy acts."""
    pid = fresh.pid_of("scheduler")
    fresh.exec("/bin/sh", "-c", f"kill -KILL {pid}")
    # usually 1.5 s: the orphaned workers' 1 s grace (test_supervisor times it); 30 s is a hang
    assert fresh.wait_exited(timeout=30) != 0
    assert "the cluster is gone" in fresh.logs()


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


def test_client_restart_with_one_worker(one_worker: Container, pems: dict[str, str]) -> None:
    """client.restart() with one worker: its nanny starts a new worker process, which computes."""
    with Client(one_worker.address, security=client_security(pems), timeout="20s") as client:
        before = client.run(os.getpid)
        client.restart()
        after = client.run(os.getpid)
        assert len(after) == 1 and set(after.values()).isdisjoint(before.values())
        assert client.submit(lambda: 3).result(timeout=30) == 3


def test_the_memory_limit_kill_with_one_worker(one_worker: Container, pems: dict[str, str]) -> None:
    """A task that holds more than the worker's 400 MiB: the nanny kills the worker process
    (KilledWorker) and starts a new one, which computes."""

    def hold_memory(size: int) -> int:
        held = b"x" * size  # written, so resident: the nanny watches the process's RSS
        time.sleep(60)
        return len(held)

    with Client(one_worker.address, security=client_security(pems), timeout="20s") as client:
        before = client.run(os.getpid)
        with pytest.raises(KilledWorker):
            client.submit(hold_memory, 500 << 20).result(timeout=60)
        client.wait_for_workers(1, timeout=60)
        after = client.run(os.getpid)
        assert set(after.values()).isdisjoint(before.values())
        assert client.submit(lambda: 4).result(timeout=30) == 4
    assert "exceeded 95% memory budget" in one_worker.logs()

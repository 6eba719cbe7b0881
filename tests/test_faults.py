"""Faults on the real container: a killed worker and a killed `dask worker` come back with no zombie
left, a killed scheduler ends the container non-zero, `docker restart` after a SIGKILL comes back
to N workers, retired workers are replaced."""

from __future__ import annotations

import os

import pytest
from distributed import Client

from tests.containers import Container, docker
from tests.material import client_security

pytestmark = pytest.mark.container


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
    pid = fresh.pid_of("distributed.cli.dask_scheduler")
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

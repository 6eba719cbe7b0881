"""Containers that share a /dev/shm (--ipc=shareable and --ipc=container:NAME, --ipc=host) keep
their key material apart: a private directory per container, on the real engine."""

from __future__ import annotations

import pytest
from distributed import Client

from tests.containers import Container, docker
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container


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

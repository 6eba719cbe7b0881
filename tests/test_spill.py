"""Spill goes to disk: the README's hardened run (--read-only --tmpfs /tmp) with a volume on the
workers' scratch space survives persisting more than the workers' memory; tmpfs is warned about;
a scratch space the container's user cannot write stops the container at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoint.errors import EXIT_CONFIG
from tests.client_env import cluster_env, run_workload
from tests.containers import Container, docker

pytestmark = pytest.mark.container
TOTAL = 1_500_000_000  # bytes persisted
CHUNK = 64_000_000
WORKER_MEMORY = 512 << 20
HARDENED = ["--read-only", "--tmpfs", "/tmp"]


@pytest.mark.load
@pytest.mark.slow
def test_persisting_past_memory_spills_to_the_volume(
    image: str, client_certs: Path, client_python: Path
) -> None:
    """1.5 GB persisted on 2 x 512 MiB workers in a 1600 MB container: the workers spill to the
    volume, nothing is killed, and the data read back from it is bit for bit what was made."""
    volume = f"dask-tls-test-{os.getpid()}-scratch"
    env = {**cluster_env(client_certs), "NUM_WORKERS": "2", "MEMORY_PER_WORKER": "512MiB"}
    run = [*HARDENED, "--memory", "1600m", "-v", f"{volume}:/scratch"]
    container = Container(image, env, docker_args=run)
    try:
        container.wait_healthy()
        result = run_workload(
            client_python, container, "spill", str(TOTAL), str(CHUNK), timeout=900
        )
        logs = container.logs()
        oom_killed = container.state("OOMKilled")
    finally:
        container.remove()
        docker("volume", "rm", volume, check=False)
    assert result["equal"] and result["chunks"] == -(-TOTAL // CHUNK)
    assert result["memory_limits"] == [WORKER_MEMORY] * 2
    spilled = result["spilled"].values()
    assert all(directory.startswith("/scratch/dask-scratch-space/") for directory, _ in spilled)
    assert sum(size for _, size in spilled) > TOTAL - 2 * WORKER_MEMORY
    assert "killed by signal" not in logs and "Restarting worker" not in logs, logs
    assert oom_killed == "false"


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

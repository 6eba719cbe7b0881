"""The work users bring, from a client environment made by `make client`, on the image run as
the README shows: hardened (--read-only --tmpfs /tmp, a volume for spill) and, to write into a
host directory, as the user's uid with the directory mounted at the same path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client_env import cluster_env, run_workload
from tests.containers import Container, docker

pytestmark = [pytest.mark.container, pytest.mark.slow]
ROWS = 200_000  # tests/workloads.py's frames


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("host-data")


@pytest.fixture(scope="module")
def readme_cluster(image: str, client_certs: Path, host_dir: Path) -> Iterator[Container]:
    volume = f"dask-tls-test-{os.getpid()}-workloads"
    run = [
        "--read-only", "--tmpfs", "/tmp", "-v", f"{volume}:/scratch",
        "--user", f"{os.getuid()}:{os.getgid()}", "--group-add", "0",
        "-v", f"{host_dir}:{host_dir}",
    ]  # fmt: skip
    container = Container(image, {**cluster_env(client_certs), "NUM_WORKERS": "2"}, docker_args=run)
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()
        docker("volume", "rm", volume, check=False)


def test_versions_match_and_the_dashboard_link_is_https(
    readme_cluster: Container, client_python: Path
) -> None:
    """get_versions(check=True) warns about nothing (Python included); the link is https."""
    result = run_workload(client_python, readme_cluster, "versions")
    assert result["warnings"] == []
    assert result["python"]["client"] == result["python"]["scheduler"]
    assert result["dashboard_link"].startswith("https://")


def test_dataframe_groupby(readme_cluster: Container, client_python: Path) -> None:
    """A groupby-sum on the cluster equals pandas' own."""
    assert run_workload(client_python, readme_cluster, "groupby") == {"equal": True, "groups": 97}


def test_p2p_shuffle(readme_cluster: Container, client_python: Path) -> None:
    """A P2P shuffle ran: every key in exactly one partition, no row lost."""
    result = run_workload(client_python, readme_cluster, "shuffle")
    assert result["rows"] == ROWS and result["keys_in_one_partition"]
    assert {"shuffle-transfer", "shuffle-barrier"} <= set(result["task_kinds"])


def test_merge(readme_cluster: Container, client_python: Path) -> None:
    """A merge of two frames equals pandas' merge."""
    assert run_workload(client_python, readme_cluster, "merge") == {"equal": True, "rows": ROWS}


def test_parquet_round_trip_in_a_host_directory(
    readme_cluster: Container, client_python: Path, host_dir: Path
) -> None:
    """The workers write parquet into the bind-mounted host directory, as the user's uid, and
    read it back equal."""
    target = host_dir / "frame.parquet"
    result = run_workload(client_python, readme_cluster, "parquet", str(target))
    assert result == {"equal": True, "rows": ROWS}
    parts = list(target.glob("*.parquet"))
    assert len(parts) == 4
    assert {(p.stat().st_uid, p.stat().st_gid) for p in parts} == {(os.getuid(), os.getgid())}


def test_bag_to_dataframe(readme_cluster: Container, client_python: Path) -> None:
    """A bag of records becomes a dataframe on the cluster."""
    result = run_workload(client_python, readme_cluster, "bag_to_dataframe")
    assert result == {"sum": sum(range(10_000)), "columns": ["n", "name"]}


def test_workers_listen_only_inside_the_container(
    readme_cluster: Container, client_python: Path
) -> None:
    """Why direct-to-worker comms cannot work from outside one container (README): the workers
    reach their scheduler over loopback, so they listen, and advertise, 127.0.0.1 only."""
    workers = run_workload(client_python, readme_cluster, "worker_addresses")["workers"]
    assert len(workers) == 2
    assert all(address.startswith("tls://127.0.0.1:") for address in workers)

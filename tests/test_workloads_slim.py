"""The slim build (`make build GROUPS=cluster`: no dataframes): arrays and futures compute; a
dataframe graph is refused by its scheduler, which cannot unpickle it without pandas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client_env import ROOT, cluster_env, make, run_workload, sibling_tag
from tests.containers import Container, docker

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.fixture(scope="module")
def slim_cluster(image: str, client_certs: Path) -> Iterator[Container]:
    tag = sibling_tag(image, "slim")
    make(ROOT, "build", "GROUPS=cluster", f"IMAGE={tag}")
    container = Container(tag, {**cluster_env(client_certs), "NUM_WORKERS": "2"})
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()
        docker("rmi", tag, check=False)


def test_slim_image_has_no_pandas(slim_cluster: Container) -> None:
    """What makes it slim: no pandas, no pyarrow in the image."""
    probe = "import importlib.util as u; print(u.find_spec('pandas'), u.find_spec('pyarrow'))"
    assert slim_cluster.exec("/opt/venv/bin/python", "-c", probe).split() == ["None", "None"]


def test_arrays_and_futures_compute(slim_cluster: Container, client_python: Path) -> None:
    """A dask array reduction and 100 futures compute on the slim image."""
    result = run_workload(client_python, slim_cluster, "arrays_and_futures")
    assert result == {"array_sum": sum(range(1_000_000)), "futures_sum": 2 * sum(range(100))}


def test_a_dataframe_graph_is_refused_by_the_scheduler(
    slim_cluster: Container, client_python: Path
) -> None:
    """From a client with pandas, a dataframe computation fails at once: the scheduler cannot
    deserialize the graph (README, "Your own packages")."""
    result = run_workload(client_python, slim_cluster, "dataframe_error")
    assert result["error"].startswith(
        "RuntimeError: Error during deserialization of the task graph"
    )

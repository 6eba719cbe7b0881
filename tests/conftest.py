from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import Container, docker_available
from tests.material import ClusterMaterial


@pytest.fixture(scope="session")
def material() -> ClusterMaterial:
    return ClusterMaterial.issue()


@pytest.fixture(scope="session")
def image() -> str:
    """The image under test: $IMAGE (make test builds it first), else built here."""
    if not docker_available():
        pytest.fail("no Docker engine answers: start dockerd (see .ci/run)")
    name = os.environ.get("IMAGE")
    if not name:
        name = "dask-tls:test"
        subprocess.run(
            ["make", "build", f"IMAGE={name}"], check=True, cwd=Path(__file__).parents[1]
        )
    return name


@pytest.fixture(scope="module")
def cluster(image: str, material: ClusterMaterial) -> Iterator[Container]:
    """A running cluster with its own CA and 2 workers, shared by a module's tests."""
    container = Container(image, {**material.ca_env(), "NUM_WORKERS": "2"})
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()

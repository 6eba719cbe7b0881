from __future__ import annotations

import os
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from distributed import Client

from entrypoint.tools.certs import new_cluster
from tests.client_env import ROOT, make_client
from tests.containers import (
    Container,
    docker_available,
    forget_removed,
    healthy_container,
    logs_for_a_report,
)
from tests.material import ClusterMaterial, client_security, write_pem_files


def pytest_runtest_setup(item: pytest.Item) -> None:
    forget_removed()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A container test that fails, in its body or its fixtures' setup, whatever it waited on:
    its report ends with the logs of every container the test removed or left running."""
    report: pytest.TestReport = yield
    if report.failed and report.when != "teardown" and item.get_closest_marker("container"):
        for name, logs in logs_for_a_report():
            report.sections.append((f"logs of {name}", logs))
    return report


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


def healthy_cluster(image: str, material: ClusterMaterial) -> Iterator[Container]:
    """A running cluster with its own CA and 2 workers, removed afterwards."""
    yield from healthy_container(image, {**material.ca_env(), "NUM_WORKERS": "2"})


@pytest.fixture(scope="module")
def cluster(image: str, material: ClusterMaterial) -> Iterator[Container]:
    """A cluster shared by a module's tests."""
    yield from healthy_cluster(image, material)


@pytest.fixture
def client(cluster: Container, pems: dict[str, str]) -> Iterator[Client]:
    """A client of the module's cluster, connected with the CA's client certificate."""
    with Client(cluster.address, security=client_security(pems), timeout="20s") as connected:
        yield connected


@pytest.fixture
def fresh(image: str, material: ClusterMaterial) -> Iterator[Container]:
    """A cluster of its own, for a test that breaks or stops it."""
    yield from healthy_cluster(image, material)


@pytest.fixture(scope="session")
def pems(tmp_path_factory: pytest.TempPathFactory, material: ClusterMaterial) -> dict[str, str]:
    return write_pem_files(
        tmp_path_factory.mktemp("pems"),
        ca=material.ca.cert_pem,
        client=material.client.cert_pem,
        client_key=material.client.key_pem,
        intruder=material.intruder.cert_pem,
        intruder_key=material.intruder.key_pem,
        seed=material.seed.cert_pem,
        seed_key=material.seed.key_pem,
    )


@pytest.fixture(scope="session")
def client_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `certs new` writes: a CA, the cluster's certificate, a client's (`client`)."""
    certs = tmp_path_factory.mktemp("client-certs")
    new_cluster(certs, days=90)
    return certs


@pytest.fixture(scope="session")
def client_python(image: str, client_certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a client environment made by `make client` for the image under test."""
    return make_client(ROOT, image, tmp_path_factory.mktemp("client-env") / "venv", client_certs)

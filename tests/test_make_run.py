"""`make run` in a fresh copy of the checkout: the sizes, ports and docker options a user gives
reach the container, and its ports are published on loopback unless told otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.contract import DASHBOARD_PORT, SCHEDULER_PORT
from entrypoint.tools.client import connect
from tests.client_env import copy_of_project, make
from tests.containers import OURS, docker

pytestmark = pytest.mark.container
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 (what docker reports; this test binds nothing)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_of_project(tmp_path_factory.mktemp("make-run"))


@pytest.fixture
def name() -> Iterator[str]:
    """The container's name; it and its scratch volume are removed afterwards."""
    name = f"{OURS[0]}make-run"
    try:
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", f"{name}-scratch", check=False)


def bindings(name: str) -> dict[str, list[dict[str, str]]]:
    ports = docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", name).stdout
    found: dict[str, list[dict[str, str]]] = json.loads(ports)
    return found


def test_make_run_takes_sizes_ports_and_docker_options(
    project: Path, image: str, name: str
) -> None:
    """NUM_WORKERS, THREADS_PER_WORKER, MEMORY_PER_WORKER, the host ports (0: any free one) and
    RUN_OPTIONS (quotes kept) reach the container; both ports are published on 127.0.0.1 only;
    a client of the certificates it made computes on the worker as sized; make stop ends it."""
    output = make(
        project, "run", f"IMAGE={image}", f"NAME={name}", "NUM_WORKERS=1",
        "THREADS_PER_WORKER=3", "MEMORY_PER_WORKER=700MiB", "SCHEDULER_PORT=0", "DASHBOARD_PORT=0",
        "RUN_OPTIONS=--memory 2g --label 'dask-tls.test=make run'",
    )  # fmt: skip
    published = bindings(name)
    for container_port in (SCHEDULER_PORT, DASHBOARD_PORT):
        [binding] = published[f"{container_port}/tcp"]
        assert binding["HostIp"] == "127.0.0.1" and binding["HostPort"] != str(container_port)
    port = published[f"{SCHEDULER_PORT}/tcp"][0]["HostPort"]
    assert f"scheduler tls://localhost:{port}," in output
    label = docker("inspect", "-f", '{{index .Config.Labels "dask-tls.test"}}', name).stdout
    assert label.strip() == "make run"
    assert docker("inspect", "-f", "{{.HostConfig.Memory}}", name).stdout.strip() == str(2 << 30)
    with connect(f"tls://127.0.0.1:{port}", project / "certs", timeout="30s") as client:
        [worker] = client.scheduler_info()["workers"].values()
        assert (worker["nthreads"], worker["memory_limit"]) == (3, 700 << 20)
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    make(project, "stop", f"NAME={name}")
    assert docker("inspect", name, check=False).returncode != 0


def test_make_run_publishes_where_told(project: Path, image: str, name: str) -> None:
    """PUBLISH= (empty) publishes on every interface, as plain `docker run -p` does."""
    make(project, "run", f"IMAGE={image}", f"NAME={name}", "NUM_WORKERS=1", "PUBLISH=",
         "SCHEDULER_PORT=0", "DASHBOARD_PORT=0")  # fmt: skip
    hosts = {binding["HostIp"] for binding in bindings(name)[f"{SCHEDULER_PORT}/tcp"]}
    assert EVERY_INTERFACE in hosts and hosts <= {EVERY_INTERFACE, "::"}

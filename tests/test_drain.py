"""Workers that leave without losing work, on the real engine: a scheduler container and worker
containers (DASK_ROLE=worker) on one Docker network; `docker stop` on a worker container first
moves its results to the other workers (the drain), within DRAIN_TIMEOUT."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client, Future, wait

from entrypoint.contract import SCHEDULER_PORT
from tests.containers import Container, docker
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container
RESULT_BYTES = 2 << 20


@pytest.fixture(scope="module")
def network() -> Iterator[str]:
    name = f"dask-tls-test-{os.getpid()}-drain"
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def scheduler(image: str, material: ClusterMaterial, network: str) -> Iterator[Container]:
    """A scheduler container, `scheduler` on the network, shared by the module's tests."""
    env = {**material.ca_env(), "DASK_ROLE": "scheduler"}
    container = Container(image, env, docker_args=["--network", network, "--network-alias",
                                                   "scheduler"])  # fmt: skip
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()


class Workers:
    """Worker containers of this test, on the network; removed at the end."""

    def __init__(self, image: str, material: ClusterMaterial, network: str) -> None:
        self.image, self.material, self.network = image, material, network
        self.started: list[Container] = []

    def start(self, workers: int = 1, **env: str) -> Container:
        container = Container(
            self.image,
            {**self.material.ca_env(), "DASK_ROLE": "worker", "NUM_WORKERS": str(workers),
             "DASK_SCHEDULER_ADDRESS": f"tls://scheduler:{SCHEDULER_PORT}", **env},
            docker_args=["--network", self.network],
        )  # fmt: skip
        self.started.append(container)
        return container

    def remove(self) -> None:
        for container in self.started:
            container.remove()


@pytest.fixture
def workers(image: str, material: ClusterMaterial, network: str) -> Iterator[Workers]:
    started = Workers(image, material, network)
    try:
        yield started
    finally:
        started.remove()


@pytest.fixture
def client(scheduler: Container, pems: dict[str, str]) -> Iterator[Client]:
    with Client(scheduler.address, security=client_security(pems), timeout="30s") as connected:
        yield connected


def addresses_of(client: Client, container: Container) -> list[str]:
    """The addresses of the workers that run in `container` (they listen on its network IP)."""
    ip = container.state_of("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    return [a for a in client.scheduler_info()["workers"] if a.rsplit(":", 1)[0] == f"tls://{ip}"]


def random_results(client: Client, places: list[list[str]]) -> list[Future[Any]]:
    """One result of RESULT_BYTES of os.urandom on each entry of `places`' workers (computed
    again, it would be other bytes; restricted to workers that are gone, it would never be)."""
    futures = [client.submit(os.urandom, RESULT_BYTES, pure=False, workers=w) for w in places]
    wait(futures, timeout=60)
    return futures


def holders(client: Client, futures: list[Future[Any]]) -> set[str]:
    return {worker for held in client.who_has(futures).values() for worker in held}


def timed_stop(container: Container, *args: str) -> float:
    began = time.monotonic()
    docker("stop", *args, container.name, timeout=120)
    return time.monotonic() - began


def test_a_stopped_worker_container_hands_its_results_over(
    workers: Workers, client: Client, record_property: Any
) -> None:
    """30 results of 2 MB over two worker containers, 17 on one (two workers): `docker stop -t 30`
    on it moves all 17 to the other container, same bytes, nothing computed again; exit 0, one
    line says so."""
    leaving, staying = workers.start(2), workers.start(1)
    client.wait_for_workers(3, timeout=60)
    on_leaving, on_staying = addresses_of(client, leaving), addresses_of(client, staying)
    futures = random_results(client, [on_leaving] * 17 + [on_staying] * 13)
    assert holders(client, futures[:17]) == set(on_leaving)
    before = client.gather(futures)
    seconds = timed_stop(leaving, "-t", "30")
    record_property("stop_seconds", round(seconds, 2))
    print(f"docker stop -t 30 of a worker container holding 17 x 2 MB: {seconds:.2f} s")
    assert leaving.state("ExitCode") == "0"
    wait(futures, timeout=60)  # lost, they would wait forever for workers that are gone
    assert client.gather(futures) == before
    staying.wait_until(lambda: holders(client, futures) == set(on_staying), "the results on it")
    assert "drained 2 workers in " in leaving.logs()
    assert ": 17 results moved" in leaving.logs()


def test_a_lone_worker_container_stops_within_its_budget_and_says_what_is_lost(
    workers: Workers, client: Client
) -> None:
    """Nowhere to move them: the stop does not wait for SIGKILL (exit 0 within docker's 10 s),
    and one line says how many results could not be moved."""
    alone = workers.start(1)
    client.wait_for_workers(1, timeout=60)
    futures = random_results(client, [addresses_of(client, alone)] * 5)
    timed_stop(alone)
    assert alone.state("ExitCode") == "0"
    lines = [line for line in alone.logs().splitlines() if "could not be moved" in line]
    assert len(lines) == 1 and lines[0].endswith(
        "5 of 5 results could not be moved (no other worker could take them)"
    ), lines
    assert {future.status for future in futures} != {"finished"}


def test_a_stop_in_the_middle_of_a_computation_keeps_the_result_right(
    workers: Workers, client: Client
) -> None:
    """A worker container stopped while a computation runs on both: the result is still right
    (its finished parts moved, its running tasks run again on the other container)."""

    def slow_square(x: int) -> int:  # nested: sent by value, as cloudpickle does
        time.sleep(0.1)
        return x * x

    leaving, staying = workers.start(1), workers.start(1)
    client.wait_for_workers(2, timeout=60)
    squares = client.map(slow_square, range(200))
    total = client.submit(sum, squares)
    on_leaving = set(addresses_of(client, leaving))
    leaving.wait_until(
        lambda: (
            sum(1 for f in squares if f.done()) >= 20
            and bool(holders(client, squares) & on_leaving)
        ),
        "a part of the squares done on the leaving container",
    )
    timed_stop(leaving, "-t", "30")
    assert leaving.state("ExitCode") == "0"
    assert total.result(timeout=120) == sum(x * x for x in range(200))
    assert "drained 1 workers in " in leaving.logs()
    assert staying.running()

"""Load over TLS, bounded in count and time: many small tasks, and a 1 GiB round trip."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from operator import add

import numpy as np
import pytest
from distributed import Client

from tests.containers import Container
from tests.material import ClusterMaterial, client_security

pytestmark = [pytest.mark.container, pytest.mark.load]
CHUNK = 64 << 20  # bytes
GIB = 1 << 30


@pytest.fixture(scope="module")
def loaded(image: str, material: ClusterMaterial) -> Iterator[Container]:
    container = Container(
        image, {**material.ca_env(), "NUM_WORKERS": "2", "MEMORY_PER_WORKER": "4GiB"}
    )
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()


def test_ten_thousand_small_tasks(loaded: Container, pems: dict[str, str]) -> None:
    """10,000 tasks over TLS, every result back and right, within two minutes."""
    with Client(loaded.address, security=client_security(pems), timeout="20s") as client:
        futures = client.map(add, range(10_000), range(10_000))
        results = client.gather(futures, errors="raise")
        assert results == [2 * i for i in range(10_000)]
        del futures
        assert client.submit(sum, [1, 2]).result(timeout=120) == 3


def test_one_gib_scatter_gather_round_trip(loaded: Container, pems: dict[str, str]) -> None:
    """1 GiB in 64 MiB chunks scattered to the workers and gathered back, byte for byte."""
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, CHUNK, dtype=np.uint8) for _ in range(GIB // CHUNK)]
    digests = [hashlib.sha256(chunk.data).hexdigest() for chunk in chunks]
    with Client(loaded.address, security=client_security(pems), timeout="30s") as client:
        futures = client.scatter(chunks)
        del chunks
        on_workers = client.gather(
            client.map(lambda c: hashlib.sha256(c.data).hexdigest(), futures), errors="raise"
        )
        back = client.gather(futures, errors="raise")
    assert on_workers == digests
    assert [hashlib.sha256(chunk.data).hexdigest() for chunk in back] == digests

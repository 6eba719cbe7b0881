"""Metrics: Debian's real Prometheus scrapes the scheduler's /metrics on 8787 over mutual TLS with a
viewer's certificate, as the README's scrape_configs says, and without a certificate it cannot."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from entrypoint.contract import DASHBOARD_PORT
from entrypoint.tools.certs import new_cluster
from tests.containers import Container

PROMETHEUS = Path("/usr/bin/prometheus")
HANG = 120  # seconds: a scrape every second; only a hang takes this long


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape_config(certs: Path, target: str) -> dict[str, Any]:
    """The README's scrape_configs, with a viewer's certificate; and one job without any."""
    tls = {"ca_file": str(certs / "ca.pem"), "server_name": "localhost"}
    viewer = {"cert_file": str(certs / "prom.pem"), "key_file": str(certs / "prom-key.pem")}
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "scheme": "https", "tls_config": {**tls, **extra},
             "static_configs": [{"targets": [target]}]}
            for job, extra in (("dask", viewer), ("dask-no-certificate", {}))
        ],
    }  # fmt: skip


@pytest.fixture
def prometheus(image: str, tmp_path: Path) -> Iterator[tuple[str, Container]]:
    """A cluster, and Prometheus on loopback scraping its 8787 (our process, our files only)."""
    if not PROMETHEUS.exists():
        pytest.fail("Debian's prometheus is not installed (apt-get install prometheus)")
    certs = tmp_path / "certs"
    new_cluster(certs, clients=(), viewers=("prom",))
    env = {
        name: (certs / file).read_text()
        for name, file in (("DASK_CLUSTER_CERT", "cluster.pem"),
                           ("DASK_CLUSTER_KEY", "cluster-key.pem"), ("DASK_CLUSTER_CA", "ca.pem"))
    }  # fmt: skip
    container = Container(image, {**env, "NUM_WORKERS": "2"})
    server = None
    try:
        container.wait_healthy()
        config = tmp_path / "prometheus.yml"
        target = f"127.0.0.1:{container.port(DASHBOARD_PORT)}"
        config.write_text(yaml.safe_dump(scrape_config(certs, target)))
        address = f"127.0.0.1:{free_port()}"
        server = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'db'}",
             f"--web.listen-address={address}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
        )  # fmt: skip
        yield f"http://{address}", container
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        container.remove()


def api(base: str, path: str, **query: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our loopback)
            return json.load(response)["data"]
    except OSError:
        return None  # not listening yet


def scraped_targets(base: str, deadline: float) -> dict[str, Any]:
    """Prometheus's targets by job, once each has been scraped at least once (the jobs start
    apart: one may still be "unknown" when the other has samples)."""
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        targets = api(base, "targets")["activeTargets"]
        health = {target["labels"]["job"]: target for target in targets}
        if all(target["health"] != "unknown" for target in health.values()):
            break
        time.sleep(1)
    return health


@pytest.mark.container
def test_prometheus_scrapes_dask_metrics_over_mutual_tls(
    prometheus: tuple[str, Container],
) -> None:
    """Prometheus's own API returns samples of dask_scheduler_workers from the job with a viewer's
    certificate; the job without a certificate is down, with a TLS error."""
    base, container = prometheus
    deadline = time.monotonic() + HANG
    samples: list[Any] = []
    while not samples and time.monotonic() < deadline:
        time.sleep(1)
        found = api(base, "query", query='dask_scheduler_workers{job="dask"}')
        samples = (found or {}).get("result", [])
    assert samples, container.logs()
    assert sum(float(sample["value"][1]) for sample in samples) >= 2
    health = scraped_targets(base, deadline)
    assert health["dask"]["health"] == "up"
    refused = health["dask-no-certificate"]
    assert refused["health"] == "down" and refused["lastError"], refused

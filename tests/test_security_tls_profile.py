"""One TLS profile on every port, as a scanner on the network sees it: sslyze (tools/poetry.lock,
`make tools`) against the scheduler's 8786 and 8787 and a worker's listener, its nanny's and its
HTTP port, with a client certificate from the cluster's CA, since every port requires one.

The ports are those of a DASK_ROLE=scheduler container and a DASK_ROLE=worker container: a worker
container's processes listen on its own IP, where a scanner reaches them. Both roles run the same
processes with the same configuration as the single container (`cluster.child_environment`)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from distributed.comm.addressing import get_address_host_port

from entrypoint.contract import DASHBOARD_PORT, SCHEDULER_PORT
from entrypoint.tools.certs import issue, new_key
from tests.containers import Container
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container
SSLYZE = Path(__file__).parents[1] / "tools" / ".venv" / "bin" / "sslyze"
# sslyze's names for the protocols, and its options that list each one's accepted suites
PROTOCOLS = {
    "ssl_2_0": "--sslv2",
    "ssl_3_0": "--sslv3",
    "tls_1_0": "--tlsv1",
    "tls_1_1": "--tlsv1_1",
    "tls_1_2": "--tlsv1_2",
    "tls_1_3": "--tlsv1_3",
}
REFUSED = ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1")
# Mozilla's "intermediate" profile: in TLS 1.2 only ECDHE key exchange with an AEAD cipher
TLS_1_2_SUITE = re.compile(
    r"TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)"
)
TLS_1_3_SUITES = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
}
CURVES = {"X25519", "secp256r1", "secp384r1"}
MIN_VERSION = "DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION"


@dataclass(frozen=True)
class Found:
    """What sslyze found on one port."""

    client_certificate: str  # what a client without one learns: REQUIRED, OPTIONAL or DISABLED
    suites: dict[str, list[str]]  # protocol -> the cipher suites the port accepted
    curves: list[str]

    def describe(self) -> str:
        offered = "; ".join(f"{p}: {' '.join(s)}" for p, s in self.suites.items() if s)
        return (
            f"client certificate {self.client_certificate}; {offered or 'no protocol'}; "
            f"curves {' '.join(self.curves) or 'none'}"
        )


def sslyze(targets: list[str], *options: str) -> dict[str, dict[str, Any]]:
    """host:port -> sslyze's JSON result for it; fails on any target it could not scan."""
    if not SSLYZE.exists():
        pytest.fail(f"{SSLYZE} is missing: run `make tools` (it installs tools/poetry.lock)")
    result = subprocess.run(
        [str(SSLYZE), "--json_out", "-", "--mozilla_config", "disable", *options, *targets],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    output = json.loads(result.stdout)
    assert not output["invalid_server_strings"], output["invalid_server_strings"]
    servers = {}
    for server in output["server_scan_results"]:
        location = server["server_location"]
        target = f"{location['ip_address']}:{location['port']}"
        assert server["connectivity_status"] == "COMPLETED", (target, server)
        failed = {
            name: command["error_reason"]
            for name, command in (server["scan_result"] or {}).items()
            if command["status"] not in ("NOT_SCHEDULED", "COMPLETED")
        }
        assert not failed, (target, failed)
        servers[target] = server
    return servers


def scan(targets: list[str], pems: dict[str, str]) -> dict[str, Found]:
    """host:port -> what sslyze finds there: once as a client without a certificate (does the port
    ask for one?), then with the client's, every protocol's suites and the curves."""
    anonymous = sslyze(targets, "--compression")  # the cheapest scan: connecting is what counts
    scanned = sslyze(
        targets, "--cert", pems["client"], "--key", pems["client_key"],
        *PROTOCOLS.values(), "--elliptic_curves",
    )  # fmt: skip
    found = {}
    for target, server in scanned.items():
        results = server["scan_result"]
        found[target] = Found(
            client_certificate=anonymous[target]["connectivity_result"]["client_auth_requirement"],
            suites={
                protocol: [
                    accepted["cipher_suite"]["name"]
                    for accepted in results[f"{protocol}_cipher_suites"]["result"][
                        "accepted_cipher_suites"
                    ]
                ]
                for protocol in PROTOCOLS
            },
            curves=[c["name"] for c in results["elliptic_curves"]["result"]["supported_curves"]],
        )
    return found


def departures(found: Found, floor: str) -> list[str]:
    """How a port departs from the profile with TLS floor `floor` ("1.2" or "1.3")."""
    suites = found.suites
    problems = [f"{protocol} accepted" for protocol in REFUSED if suites[protocol]]
    problems += [f"TLS 1.2 suite {s}" for s in suites["tls_1_2"] if not TLS_1_2_SUITE.fullmatch(s)]
    problems += [f"TLS 1.3 suite {s}" for s in set(suites["tls_1_3"]) - TLS_1_3_SUITES]
    if floor == "1.3" and suites["tls_1_2"]:
        problems.append("TLS 1.2 accepted under a TLS 1.3 floor")
    if floor == "1.2" and not suites["tls_1_2"]:
        problems.append("no TLS 1.2")
    if not suites["tls_1_3"]:
        problems.append("no TLS 1.3")
    if set(found.curves) != CURVES:
        problems.append(f"curves {sorted(found.curves)}, not {sorted(CURVES)}")
    if found.client_certificate != "REQUIRED":
        problems.append(f"client certificate {found.client_certificate}")
    return problems


@dataclass
class Deployment:
    """A scheduler container and a worker container with one worker, on Docker's bridge."""

    scheduler: Container
    workers: Container
    floor: str

    def ports(self, pems: dict[str, str]) -> dict[str, str]:
        """name -> host:port of every TLS port, the workers' as the scheduler knows them."""
        scheduler = f"tls://{self.scheduler.ip}:{SCHEDULER_PORT}"
        with Client(scheduler, security=client_security(pems), timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            [(address, worker)] = client.scheduler_info()["workers"].items()
        host, port = get_address_host_port(address)
        assert host == self.workers.ip, address
        return {
            "scheduler": f"{self.scheduler.ip}:{SCHEDULER_PORT}",
            "dashboard": f"{self.scheduler.ip}:{DASHBOARD_PORT}",
            "worker": f"{host}:{port}",
            "nanny": "{}:{}".format(*get_address_host_port(worker["nanny"])),
            "worker HTTP": f"{host}:{worker['services']['dashboard']}",
        }


# name -> the cluster certificate's key, the variables that set the TLS floor (unset: 1.2)
PROFILES: dict[str, tuple[str, dict[str, str]]] = {
    "ecdsa": ("ec", {}),
    "rsa": ("rsa2048", {}),  # RSA keys are where static-RSA and RSA-CBC suites could appear
    "tls-1.3-only": ("ec", {MIN_VERSION: "1.3"}),
}


@pytest.fixture(params=list(PROFILES))
def deployment(
    request: pytest.FixtureRequest, image: str, material: ClusterMaterial
) -> Iterator[Deployment]:
    key, floor_env = PROFILES[request.param]
    cluster = issue("cluster", material.ca, key=new_key(key))
    env = {
        "DASK_CLUSTER_CERT": cluster.cert_pem.decode(),
        "DASK_CLUSTER_KEY": cluster.key_pem.decode(),
        "DASK_CLUSTER_CA": material.ca.cert_pem.decode(),
        **floor_env,
    }
    started = []
    try:
        scheduler = Container(image, {**env, "DASK_ROLE": "scheduler"})
        started.append(scheduler)
        scheduler.wait_healthy()
        worker_env = {
            **env,
            "DASK_ROLE": "worker",
            "DASK_SCHEDULER_ADDRESS": f"tls://{scheduler.ip}:{SCHEDULER_PORT}",
            "NUM_WORKERS": "1",
        }
        workers = Container(image, worker_env)
        started.append(workers)
        workers.wait_healthy()
        yield Deployment(scheduler, workers, floor_env.get(MIN_VERSION, "1.2"))
    finally:
        for container in started:
            container.remove()


def test_every_port_offers_one_modern_profile(deployment: Deployment, pems: dict[str, str]) -> None:
    """Every port requires a client certificate; SSL 2/3 and TLS 1.0/1.1 are refused; TLS 1.2
    (unless the floor is 1.3) offers only ECDHE with AES-GCM or ChaCha20-Poly1305, TLS 1.3 its AEAD
    suites; the curves are X25519, P-256 and P-384."""
    ports = deployment.ports(pems)
    found = scan(list(ports.values()), pems)
    report = "\n".join(f"{name} {t}: {found[t].describe()}" for name, t in ports.items())
    problems = {name: departures(found[t], deployment.floor) for name, t in ports.items()}
    assert problems == {name: [] for name in ports}, report

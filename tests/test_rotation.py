"""Rotation without a restart: a renewed certificate from the same CA, mounted as files, is swapped
into the running scheduler, nannies and workers on SIGHUP; bad material keeps the old one."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from distributed import Client, as_completed
from distributed.security import Security

from entrypoint.cluster import Plan
from entrypoint.contract import (
    CA_FILE,
    CA_VAR,
    CERT_FILE,
    CERT_VAR,
    CRL_FILE,
    CRL_VAR,
    DASHBOARD_PORT,
    KEY_FILE,
    KEY_VAR,
    PLAN_FILE,
    SCHEDULER_PORT,
    SCRATCH_VAR,
    file_var,
)
from entrypoint.private_files import write_private_files
from entrypoint.rotation import ServedCertificate, expiry_line
from entrypoint.start import validate
from entrypoint.tools.certs import ClusterSet, issue, new_cluster, revoke
from tests.bad_inputs import BAD_INPUTS, crl, reloadable
from tests.containers import Container, docker
from tests.material import ClusterMaterial

MOUNT = "/run/secrets/dask-tls"
TASKS = 300


def put(directory: Path, name: str, data: bytes) -> None:
    """Replace a mounted file in one step, readable by the container's user."""
    staged = directory / f".{name}.new"
    staged.write_bytes(data)
    staged.chmod(0o644)
    staged.replace(directory / name)


def served_serial(host: str, port: int, certs: Path) -> int:
    """The serial of the certificate a new TLS connection to host:port is served."""
    context = ssl.create_default_context(cafile=certs / "ca.pem")
    context.check_hostname = False
    context.load_cert_chain(certs / "client.pem", certs / "client-key.pem")
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def security(certs: Path, client: str = "client") -> Security:
    return Security(
        tls_ca_file=str(certs / "ca.pem"),
        tls_client_cert=str(certs / f"{client}.pem"),
        tls_client_key=str(certs / f"{client}-key.pem"),
        require_encryption=True,
    )


@pytest.fixture
def mounted(image: str, tmp_path: Path) -> Iterator[tuple[Container, ClusterSet, Path]]:
    """A cluster whose material is mounted files, as Docker and Kubernetes secrets are."""
    certs = tmp_path / "certs"
    made = new_cluster(certs, clients=("client", "other"), viewers=("vera",))
    revoke(certs, (), ())  # an empty revocation list, as a cluster that may revoke has
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    secrets.chmod(0o755)
    for name, source in (("cert.pem", "cluster.pem"), ("key.pem", "cluster-key.pem"),
                         ("ca.pem", "ca.pem"), ("crl.pem", "crl.pem")):  # fmt: skip
        put(secrets, name, (certs / source).read_bytes())
    env = {
        f"DASK_CLUSTER_{part.upper()}_FILE": f"{MOUNT}/{part}.pem"
        for part in ("cert", "key", "ca", "crl")
    }
    container = Container(
        image, {**env, "NUM_WORKERS": "2"}, docker_args=["-v", f"{secrets}:{MOUNT}:ro"]
    )
    try:
        container.wait_healthy()
        yield container, made, secrets
    finally:
        container.remove()


def stream_of_tasks(client: Client, results: list[int]) -> None:
    """A bounded stream: a few tasks in flight at any time, each result kept."""

    def slow_identity(i: int) -> int:
        time.sleep(0.02)  # the point: tasks still in flight when the certificate changes
        return i

    futures = as_completed(client.map(slow_identity, range(TASKS), pure=False))
    results.extend(future.result() for future in futures)


@pytest.mark.container
def test_rotation_while_a_client_computes(mounted: tuple[Container, ClusterSet, Path]) -> None:
    """SIGHUP with a renewed certificate mounted: no task lost, the connected client keeps working,
    new connections to 8786, 8787, a worker and a nanny get the new certificate, and a client
    certificate from the same CA still connects."""
    container, made, secrets = mounted
    certs = made.written[0].parent
    old_serial = served_serial(container.ip, SCHEDULER_PORT, certs)
    renewed = issue("dask-tls cluster", made.ca, names=("localhost", "127.0.0.1"))
    new_serial = renewed.cert.serial_number

    def served_inside(address: str) -> int:
        """Run on a worker: the serial a new connection to `address` is served."""
        import dask.config

        host, port = address.removeprefix("tls://").rsplit(":", 1)
        tls = "distributed.comm.tls"
        context = ssl.create_default_context(cafile=dask.config.get(f"{tls}.ca-file"))
        context.check_hostname = False
        context.load_cert_chain(
            dask.config.get(f"{tls}.client.cert"), dask.config.get(f"{tls}.client.key")
        )
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            context.wrap_socket(raw) as conn,
        ):
            der = conn.getpeercert(binary_form=True) or b""
        # no assert in here: it runs on a worker, where pytest's rewritten asserts cannot
        return int(x509.load_der_x509_certificate(der).serial_number)

    results: list[int] = []
    with Client(container.address, security=security(certs), timeout="20s") as client:
        workers = client.scheduler_info()["workers"]
        first, second = sorted(workers)
        streaming = threading.Thread(target=stream_of_tasks, args=(client, results))
        streaming.start()
        put(secrets, "key.pem", renewed.key_pem)
        put(secrets, "cert.pem", renewed.cert_pem)
        docker("kill", "--signal", "HUP", container.name)

        def everywhere_new() -> bool:
            outside = {
                served_serial(container.ip, port, certs)
                for port in (SCHEDULER_PORT, DASHBOARD_PORT)
            }
            inside = {
                client.run(served_inside, address, workers=[first])[first]
                for address in (second, workers[second]["nanny"])
            }
            return outside | inside == {new_serial}

        container.wait_until(everywhere_new, "the new certificate on every port")
        streaming.join(timeout=120)
        assert sorted(results) == list(range(TASKS))
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    assert old_serial != new_serial
    with Client(container.address, security=security(certs, "other"), timeout="20s") as other:
        assert other.submit(sum, [2, 3]).result(timeout=30) == 5
    logs = container.logs()
    assert "SIGHUP: serving the new certificate" in logs and "Traceback" not in logs


@pytest.mark.container
def test_bad_material_keeps_the_running_certificate(
    mounted: tuple[Container, ClusterSet, Path],
) -> None:
    """A key that does not match, then a certificate of another CA: each is refused with one log
    line, and the cluster goes on serving the old certificate."""
    container, made, secrets = mounted
    certs = made.written[0].parent
    serial = served_serial(container.ip, SCHEDULER_PORT, certs)
    stranger = issue("stranger", issue("another CA", ca=True))
    for name, data, says in (
        ("key.pem", stranger.key_pem, "the key does not match the certificate"),
        ("cert.pem", stranger.cert_pem, "the certificate was not issued by the CA"),
    ):
        put(secrets, name, data)
        docker("kill", "--signal", "HUP", container.name)
        container.wait_until(lambda: says in container.logs(), "the refusal logged")  # noqa: B023
        assert served_serial(container.ip, SCHEDULER_PORT, certs) == serial
    refusals = [line for line in container.logs().splitlines() if "kept the running" in line]
    assert len(refusals) == 2
    with Client(container.address, security=security(certs), timeout="20s") as client:
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3


SIGHUP_NAMES = {CERT_VAR: "cert.pem", KEY_VAR: "key.pem", CA_VAR: "ca.pem", CRL_VAR: "crl.pem"}


@pytest.mark.container
def test_every_bad_row_through_sighup_keeps_the_cluster(
    mounted: tuple[Container, ClusterSet, Path], material: ClusterMaterial, tmp_path: Path
) -> None:
    """Each row a running container can be handed, mounted and SIGHUP'd in turn (the CA's own
    material, so that only the row's fault is wrong): one line with the row's words each time, the
    same certificate served, a client computes, no traceback, PID 1 alive."""
    container, made, secrets = mounted
    certs = made.written[0].parent
    own = ClusterMaterial(ca=made.ca, cluster=made.cluster, client=made.clients["client"],
                          intruder=material.intruder, seed=material.seed)  # fmt: skip
    serial = served_serial(container.ip, SCHEDULER_PORT, certs)
    good = {name: (secrets / file).read_bytes() for name, file in SIGHUP_NAMES.items()}
    rows = 0
    for bad in BAD_INPUTS:
        scratch = tmp_path / bad.id
        scratch.mkdir()
        files = reloadable(bad, own, scratch)
        if not files:
            continue
        rows += 1
        for name, data in files.items():
            put(secrets, SIGHUP_NAMES[name], data)
        docker("kill", "--signal", "HUP", container.name)
        says = f"SIGHUP: kept the running certificate: {bad.says_for(scratch)}"
        container.wait_until(lambda: says in container.logs(), f"{bad.id} refused")  # noqa: B023
        for name in files:
            put(secrets, SIGHUP_NAMES[name], good[name])
    assert rows >= len(RELOADED_ROWS)
    assert served_serial(container.ip, SCHEDULER_PORT, certs) == serial
    with Client(container.address, security=security(certs), timeout="20s") as client:
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    logs = container.logs()
    assert logs.count("kept the running certificate") == rows and "Traceback" not in logs


@pytest.mark.container
def test_revoked_and_viewer_certificates(mounted: tuple[Container, ClusterSet, Path]) -> None:
    """`certs revoke other` and SIGHUP: other's connected client is cut off and cannot come back
    (the handshake fails: certificate revoked), client carries on; vera's viewer certificate is
    refused by Client() with its reason and reads /metrics on 8787."""
    container, made, secrets = mounted
    certs = made.written[0].parent
    with pytest.raises(ImportError, match="CN=vera is a viewer's certificate"):
        Client(container.address, security=security(certs, "vera"), timeout="20s")
    assert b"\ndask_scheduler_workers" in https_get(container, certs, "vera", "/metrics")
    with (
        Client(container.address, security=security(certs), timeout="20s") as client,
        Client(container.address, security=security(certs, "other"), timeout="20s") as other,
    ):
        assert other.submit(sum, [1, 1]).result(timeout=30) == 2
        revoke(certs, ("other",), ())
        put(secrets, "crl.pem", (certs / "crl.pem").read_bytes())
        docker("kill", "--signal", "HUP", container.name)
        container.wait_until(lambda: other.status != "running", "other cut off")
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    with pytest.raises(OSError, match=r"certificate revoked|CERTIFICATE_REVOKED"):
        Client(container.address, security=security(certs, "other"), timeout="5s")
    assert "the revocation list revokes 1 certificates" in container.logs()


def https_get(container: Container, certs: Path, who: str, path: str) -> bytes:
    context = ssl.create_default_context(cafile=certs / "ca.pem")
    context.check_hostname = False
    context.load_cert_chain(certs / f"{who}.pem", certs / f"{who}-key.pem")
    connection = http.client.HTTPSConnection(
        container.ip, DASHBOARD_PORT, context=context, timeout=30
    )
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


@pytest.mark.container
def test_material_given_as_values_cannot_rotate(fresh: Container) -> None:
    """SIGHUP to a container given -e values says, in one line, that they cannot change."""
    docker("kill", "--signal", "HUP", fresh.name)
    fresh.wait_until(
        lambda: "DASK_CLUSTER_CERT was given as a value" in fresh.logs(), "the refusal logged"
    )
    assert fresh.state("Health.Status") == "healthy"


def running_with_files(material: ClusterMaterial, tmp_path: Path) -> tuple[Plan, Path]:
    """What a container given its material as files (a CRL included) holds after its start: the
    mounted files, and the plan and private files the entrypoint wrote from them."""
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    pems = {**material.ca_env(), CRL_VAR: crl(material.ca)}
    env = {file_var(name): str(mounted / name) for name in pems}
    for name, text in pems.items():
        (mounted / name).write_text(text)
    checked, made = validate({**env, SCRATCH_VAR: str(tmp_path)})
    directory = tmp_path / "private"
    plan = Plan.of(directory, checked, made.not_after)
    plan = plan.with_revocation_list(True, made.crl_next_update)
    write_private_files(directory, {CERT_FILE: made.cert_pem, KEY_FILE: made.key_pem,
                                    CA_FILE: made.ca_pem, CRL_FILE: made.crl_pem or b"",
                                    PLAN_FILE: plan.to_json()})  # fmt: skip
    return plan, mounted


RELOADED_ROWS = {  # rows a reload must meet, whatever else the table comes to hold
    "cert-duplicate-extension", "ca-duplicate-extension", "ca-expired", "intermediate-expired",
    "intermediate-not-a-ca", "crl-of-another-ca", "crl-past-its-next-update",
    "crl-revokes-the-cluster", "key-of-another-cert", "cert-of-another-ca", "expired-from-the-ca",
}  # fmt: skip


def test_a_reload_keeps_the_running_material_for_every_bad_row(
    material: ClusterMaterial, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each row of the table that a running container can be handed (the material's content),
    put in the mounted files and reloaded: one error line, the row's words, the private files
    untouched; the good files then reload."""
    plan, mounted = running_with_files(material, tmp_path)
    private = sorted(Path(plan.directory).iterdir())
    before = {path.name: path.read_bytes() for path in private}
    served = ServedCertificate(plan)
    met = set()
    for bad in BAD_INPUTS:
        scratch = tmp_path / bad.id
        scratch.mkdir()
        files = reloadable(bad, material, scratch)
        if not files:
            continue
        met.add(bad.id)
        originals = {name: (mounted / name).read_bytes() for name in files}
        for name, data in files.items():
            (mounted / name).write_bytes(data)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="entrypoint"):
            served.reload()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and lines[0].startswith(
            f"SIGHUP: kept the running certificate: {bad.says_for(scratch)}"
        ), (bad.id, lines)
        assert {p.name: p.read_bytes() for p in private} == before, bad.id
        for name, data in originals.items():
            (mounted / name).write_bytes(data)
    assert met >= RELOADED_ROWS, RELOADED_ROWS - met
    served.reload()
    assert served.plan.crl_next_update


@pytest.mark.parametrize(("days", "warns"), [(400, False), (29, True)])
def test_expiry_line(days: int, warns: bool) -> None:
    """The line names the date and the days left; from 30 days out it warns and says what to do."""
    now = datetime(2026, 11, 28, tzinfo=UTC)
    soon, line = expiry_line(now + timedelta(days=days, hours=1), now)
    assert soon is warns and f"in {days} days" in line
    assert ("certs renew" in line) is warns

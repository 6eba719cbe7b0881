"""The preload against distributed's real classes, in this process: a scheduler, workers and a
nanny over TLS on loopback, configured as the container configures them (`fixed_config`, the
preload included). Each test fails when an upgrade of distributed stops the change it covers from
working; none needs Docker."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import dask.config
import distributed.utils
import pytest
from distributed import Client, Nanny, Scheduler, Worker
from distributed.comm import registry
from distributed.security import Security

from entrypoint.cluster import pid1_environment
from entrypoint.dask_config import AUTOSCALE, DRAIN_TIMEOUT, as_environment, fixed_config
from entrypoint.preload import drain_on_stop, handshake_timeout, lean_forkserver, revocation
from entrypoint.settings import Autoscale
from entrypoint.tools.certs import Issued, issue
from tests.material import ClusterMaterial

HANG = 60  # seconds: a bound that only catches a hang
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cluster_files(tmp_path: Path, material: ClusterMaterial) -> Iterator[dict[str, Path]]:
    """The cluster's material as the private directory holds it, and dask configured with it as
    in every process of the container."""
    files = {
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "ca": tmp_path / "ca.pem",
        "client": tmp_path / "client.pem",
        "client_key": tmp_path / "client-key.pem",
    }
    for name, data in (
        ("cert", material.cluster.cert_pem),
        ("key", material.cluster.key_pem),
        ("ca", material.ca.cert_pem),
        ("client", material.client.cert_pem),
        ("client_key", material.client.key_pem),
    ):
        files[name].write_bytes(data)
    config = fixed_config(
        str(files["cert"]), str(files["key"]), str(files["ca"]),
        dashboard_tls=True, http_client_cert=True,
    )  # fmt: skip
    with dask.config.set(config):
        yield files


def client_context(files: dict[str, Path], with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files["ca"]))
    context.check_hostname = False
    if with_certificate:
        context.load_cert_chain(str(files["client"]), str(files["client_key"]))
    return context


def client_security(files: dict[str, Path]) -> Security:
    return Security(
        tls_ca_file=str(files["ca"]),
        tls_client_cert=str(files["client"]),
        tls_client_key=str(files["client_key"]),
        require_encryption=True,
    )


@asynccontextmanager
async def scheduler(dashboard: bool = False) -> AsyncIterator[Scheduler]:
    address = "127.0.0.1:0" if dashboard else None
    async with Scheduler(
        host="127.0.0.1", port=0, protocol="tls", dashboard=dashboard, dashboard_address=address
    ) as started:
        yield started


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def http_port(server: Any) -> int:
    """The port of a server's HTTP server (distributed sets it as it starts)."""
    return int(server.http_server.port)


def get_health(port: int, context: ssl.SSLContext) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=HANG)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def serial_served(port: int, files: dict[str, Path]) -> int:
    """The serial number of the certificate a new TLS connection to `port` is served."""
    from cryptography import x509

    context = client_context(files, with_certificate=True)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=HANG) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_preload_replaces_the_tls_backend(cluster_files: dict[str, Path]) -> None:
    """Importing the preload puts the bounded listener in distributed's comm registry."""
    assert isinstance(registry.get_backend("tls"), handshake_timeout.BoundedHandshakeTLSBackend)


def test_a_stalled_handshake_is_dropped(
    cluster_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that sends 6 bytes of a ClientHello and stalls is closed by the scheduler's
    listener after HANDSHAKE_TIMEOUT (upstream waits forever)."""
    monkeypatch.setattr(handshake_timeout, "HANDSHAKE_TIMEOUT", 0.5)

    def stall(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as peer:
            peer.sendall(b"\x16\x03\x01\x00\xc8\x01")
            return peer.recv(1)  # b"" once the server closes

    async def main() -> bytes:
        async with scheduler() as started:
            return await asyncio.to_thread(stall, port_of(started.address))

    assert asyncio.run(main()) == b""


def test_https_ports_ask_for_a_client_certificate(cluster_files: dict[str, Path]) -> None:
    """The scheduler's dashboard and a worker's HTTP server answer /health to a client holding a
    certificate from the cluster's CA, and to no one without one."""

    def health(port: int, with_certificate: bool) -> tuple[int, bytes] | str:
        try:
            return get_health(port, client_context(cluster_files, with_certificate))
        except (ssl.SSLError, ConnectionError):  # the handshake's alert, or the reset after it
            return "refused"

    async def main() -> dict[str, list[tuple[int, bytes] | str]]:
        async with (
            scheduler(dashboard=True) as started,
            Worker(started.address, nthreads=1, dashboard=False) as worker,
        ):
            ports = {"scheduler": http_port(started), "worker": http_port(worker)}
            return {
                role: [await asyncio.to_thread(health, port, ok) for ok in (True, False)]
                for role, port in ports.items()
            }

    answers = asyncio.run(main())
    for role, (with_certificate, without) in answers.items():
        assert with_certificate == (200, b"ok"), role
        assert without == "refused", role


def test_a_client_of_other_versions_is_refused(
    cluster_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that reports another distributed release is refused at connect with both versions
    named; one with the cluster's versions computes."""
    import distributed.versions
    from distributed.versions import get_versions

    def other_versions(**kwargs: Any) -> dict[str, Any]:
        versions: dict[str, Any] = get_versions(**kwargs)
        versions["packages"] = {**versions["packages"], "distributed": "2001.1.1"}
        return versions

    async def main() -> tuple[str, int]:
        async with (
            scheduler() as started,
            Worker(started.address, nthreads=1, dashboard=False),
        ):
            security = client_security(cluster_files)
            async with Client(started.address, security=security, asynchronous=True) as client:
                result: int = await client.submit(sum, [1, 2], pure=False)
            with monkeypatch.context() as patch:
                patch.setattr(distributed.versions, "get_versions", other_versions)
                with pytest.raises(ImportError) as refused:
                    await Client(started.address, security=security, asynchronous=True)
            return str(refused.value), result

    refusal, result = asyncio.run(main())
    assert result == 3
    assert refusal.startswith("refused: this client runs distributed 2001.1.1 (the cluster: ")


def test_a_retired_worker_is_replaced_by_its_nanny(cluster_files: dict[str, Path]) -> None:
    """retire_workers closes the worker's process; its nanny stays and starts a fresh one, which
    registers under the same name."""

    async def main() -> tuple[str, str]:
        async with (
            scheduler() as started,
            Nanny(started.address, nthreads=1, name="kept", dashboard=False) as nanny,
            Client(started.address, security=client_security(cluster_files), asynchronous=True)
            as client,
        ):  # fmt: skip
            first = nanny.worker_address
            await client.retire_workers([first])
            deadline = time.monotonic() + HANG
            while (
                not (started.workers and next(iter(started.workers)) != first)
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.1)
            [(address, state)] = started.workers.items()
            assert address != first, "no fresh worker"
            return str(state.name), nanny.status.name

    name, nanny_status = asyncio.run(main())
    assert (name, nanny_status) == ("kept", "running")


def test_a_renewed_certificate_reaches_new_connections(
    cluster_files: dict[str, Path], material: ClusterMaterial
) -> None:
    """The certificate file replaced (as rotation does: a new file renamed over it), new
    connections to the scheduler are served the new certificate, without a restart."""
    renewed: Issued = issue("cluster", material.ca)

    def replace(path: Path, data: bytes) -> None:
        staged = path.with_suffix(".new")
        staged.write_bytes(data)
        staged.rename(path)

    async def main() -> tuple[int, int]:
        async with scheduler() as started:
            port = port_of(started.address)
            before = await asyncio.to_thread(serial_served, port, cluster_files)
            replace(cluster_files["key"], renewed.key_pem)
            replace(cluster_files["cert"], renewed.cert_pem)
            deadline = time.monotonic() + HANG
            after = before
            while after == before and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                after = await asyncio.to_thread(serial_served, port, cluster_files)
            return before, after

    before, after = asyncio.run(main())
    assert before == material.cluster.cert.serial_number
    assert after == renewed.cert.serial_number


def test_the_forkserver_preloads_distributed_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the forkserver method, distributed's own context keeps our preload (distributed
    alone) instead of its list of every optional package."""
    import multiprocessing.forkserver

    server: Any = multiprocessing.forkserver._forkserver
    monkeypatch.setattr(server, "_preload_modules", ["__main__"])
    monkeypatch.setattr(distributed.utils, "_forkserver_preload_set", False)
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        lean_forkserver.install()
        distributed.utils.get_mp_context()
    assert server._preload_modules == lean_forkserver.PRELOAD


def viewer_files(files: dict[str, Path], ca: Issued) -> dict[str, Path]:
    """The cluster's files with a viewer's certificate in place of the client's."""
    viewer = issue("vera", ca, client_only=True, viewer=True, names=())
    files = {**files, "client": files["ca"].with_name("vera.pem")}
    files["client_key"] = files["ca"].with_name("vera-key.pem")
    files["client"].write_bytes(viewer.cert_pem)
    files["client_key"].write_bytes(viewer.key_pem)
    return files


def test_a_viewer_opens_no_comm(cluster_files: dict[str, Path], material: ClusterMaterial) -> None:
    """A viewer's certificate: Client() raises the scheduler's reason; an rpc to a worker and to
    a nanny raises PermissionError with it; a client certificate still computes."""
    from distributed.core import rpc

    viewer = viewer_files(cluster_files, material.ca)

    async def main() -> tuple[str, list[str], int]:
        async with (
            scheduler() as started,
            Nanny(started.address, nthreads=1, dashboard=False) as nanny,
        ):
            with pytest.raises(ImportError) as refused:
                await Client(started.address, security=client_security(viewer), asynchronous=True)
            args = client_security(viewer).get_connection_args("client")
            reasons = []
            for address in (nanny.worker_address, nanny.address):
                async with rpc(address, connection_args=args) as peer:
                    with pytest.raises(PermissionError) as denied:
                        await peer.identity()
                reasons.append(str(denied.value))
            security = client_security(cluster_files)
            async with Client(started.address, security=security, asynchronous=True) as client:
                result: int = await client.submit(sum, [1, 2], pure=False)
            return str(refused.value), reasons, result

    refusal, reasons, result = asyncio.run(main())
    assert refusal.startswith("refused: CN=vera is a viewer's certificate"), refusal
    assert all(reason == refusal for reason in reasons), reasons
    assert result == 3


def request(port: int, files: dict[str, Path], method: str, path: str) -> tuple[int, bytes]:
    context = client_context(files, with_certificate=True)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=HANG)
    try:
        connection.request(method, path, body=b"" if method == "POST" else None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_viewer_reads_the_dashboard_only(
    cluster_files: dict[str, Path], material: ClusterMaterial
) -> None:
    """With the API routes enabled, a viewer reads pages, /health and /metrics (Dask's metrics),
    and gets 403 for the API and for any method but GET; a client certificate is not held back."""
    viewer = viewer_files(cluster_files, material.ca)
    routes = dask.config.get("distributed.scheduler.http.routes")
    api = [*routes, "distributed.http.scheduler.api"]

    async def main() -> dict[tuple[str, str, str], tuple[int, bytes]]:
        with dask.config.set({"distributed.scheduler.http.routes": api}):
            async with scheduler(dashboard=True) as started:
                port = http_port(started)
                asked = [
                    ("viewer", "GET", "/health"), ("viewer", "GET", "/metrics"),
                    ("viewer", "GET", "/info/main/workers.html"),
                    ("viewer", "GET", "/api/v1"), ("viewer", "POST", "/api/v1/retire_workers"),
                    ("viewer", "GET", "/eventstream"), ("viewer", "POST", "/health"),
                    ("client", "GET", "/api/v1"),
                ]  # fmt: skip
                return {
                    (who, method, path): await asyncio.to_thread(
                        request, port, viewer if who == "viewer" else cluster_files, method, path
                    )
                    for who, method, path in asked
                }

    answers = asyncio.run(main())
    assert answers["viewer", "GET", "/health"] == (200, b"ok")
    assert b"dask_scheduler_workers" in answers["viewer", "GET", "/metrics"][1]
    assert answers["viewer", "GET", "/info/main/workers.html"][0] == 200
    for refused in (("GET", "/api/v1"), ("POST", "/api/v1/retire_workers"),
                    ("GET", "/eventstream"), ("POST", "/health")):  # fmt: skip
        status, body = answers[("viewer", *refused)]
        assert (status, body.startswith(b"a viewer's certificate reads")) == (403, True), refused
    assert answers["client", "GET", "/api/v1"][0] == 200


@pytest.fixture
def revocation_list(
    cluster_files: dict[str, Path], material: ClusterMaterial, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:  # fmt: skip
    """An empty list from `certs revoke`, configured as in the container, and the preload's
    revocation installed in this process for this test only."""
    from distributed.core import Server
    from distributed.node import ServerNode

    from entrypoint.dask_config import CRL_FILE
    from entrypoint.tools.certs import revoke

    (tmp_path / "ca.pem").write_bytes(material.ca.cert_pem)
    (tmp_path / "ca-key.pem").write_bytes(material.ca.key_pem)
    revoke(tmp_path, (), ())
    for target, name in ((Security, "_get_tls_context"), (Server, "handle_comm"),
                         (ServerNode, "start_http_server")):  # fmt: skip
        monkeypatch.setattr(target, name, getattr(target, name))
    for name in ("CURRENT", "_upstream_handle_comm", "_upstream_http"):
        monkeypatch.setattr(revocation, name, getattr(revocation, name))
    monkeypatch.setattr(revocation, "CRL_LOOK_INTERVAL", 0.2)
    served = tmp_path / "served-crl.pem"
    served.write_bytes((tmp_path / "crl.pem").read_bytes())
    with dask.config.set({CRL_FILE: str(served), "distributed.comm.timeouts.connect": "3s"}):
        revocation.install()
        yield served


def revoke_and_serve(served: Path, name: str, issued: Issued) -> None:
    """`certs revoke NAME` in the CA's folder, then the list replaced whole, as rotation does."""
    from entrypoint.tools.certs import revoke

    folder = served.parent
    (folder / f"{name}.pem").write_bytes(issued.cert_pem)
    revoke(folder, (name,), ())
    staged = served.with_suffix(".new")
    staged.write_bytes((folder / "crl.pem").read_bytes())
    staged.rename(served)


def test_a_revoked_certificate_is_cut_off(
    cluster_files: dict[str, Path], material: ClusterMaterial, revocation_list: Path
) -> None:
    """A new list revoking alice: alice's open client comm and open HTTPS connection are closed,
    a new connection of hers is refused, bob carries on; a later list revoking bob is the one
    enforced (the newest lastUpdate wins among the lists a context holds)."""
    alice, bob = (issue(n, material.ca, client_only=True, names=()) for n in ("alice", "bob"))
    files = {name: write_pem_pair(cluster_files, name, issued)
             for name, issued in (("alice", alice), ("bob", bob))}  # fmt: skip

    async def main() -> dict[str, object]:
        seen: dict[str, object] = {}
        async with (
            scheduler(dashboard=True) as started,
            Worker(started.address, nthreads=1, dashboard=False),
            Client(started.address, security=client_security(files["alice"]), asynchronous=True)
            as alices, Client(started.address, security=client_security(files["bob"]),
                              asynchronous=True) as bobs,
        ):  # fmt: skip
            page = http.client.HTTPSConnection(
                "127.0.0.1", http_port(started),
                context=client_context(files["alice"], with_certificate=True), timeout=HANG,
            )  # fmt: skip
            seen["before"] = await asyncio.to_thread(keep_alive_get, page)
            revoke_and_serve(revocation_list, "alice", alice)
            await poll(lambda: alices.id not in started.clients)
            seen["page after"] = await asyncio.to_thread(keep_alive_get, page)
            seen["alice anew"] = await connect_error(started.address, files["alice"])
            seen["bob"] = await bobs.submit(sum, [1, 2], pure=False)
            revoke_and_serve(revocation_list, "bob", bob)
            await poll(lambda: bobs.id not in started.clients)
            seen["bob anew"] = await connect_error(started.address, files["bob"])
        return seen

    seen = asyncio.run(main())
    assert seen["before"] == 200
    assert seen["page after"] == "closed"
    assert seen["bob"] == 3
    for who in ("alice anew", "bob anew"):
        assert "CERTIFICATE_REVOKED" in str(seen[who]), seen[who]


def write_pem_pair(files: dict[str, Path], name: str, issued: Issued) -> dict[str, Path]:
    """The cluster's files with `name`'s certificate and key in place of the client's."""
    paired = {**files, "client": files["ca"].with_name(f"{name}-c.pem")}
    paired["client_key"] = files["ca"].with_name(f"{name}-c-key.pem")
    paired["client"].write_bytes(issued.cert_pem)
    paired["client_key"].write_bytes(issued.key_pem)
    return paired


def keep_alive_get(connection: http.client.HTTPSConnection) -> int | str:
    """GET /health on a connection kept open between calls; "closed" once the server closed it."""
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
    except (ConnectionError, http.client.HTTPException, ssl.SSLError):
        return "closed"
    return response.status


async def poll(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.1)


async def connect_error(address: str, files: dict[str, Path]) -> str:
    try:
        async with Client(address, security=client_security(files), asynchronous=True):
            return "connected"
    except OSError as error:
        return str(error)


async def results_on(
    client: Client, workers: list[str], count: int
) -> tuple[list[Any], dict[Any, bytes]]:
    """`count` results of 64 KiB of os.urandom, spread over `workers` (computed again, anywhere,
    they would be other bytes): their futures and values."""
    futures = [
        client.submit(os.urandom, 64 << 10, pure=False, workers=[workers[i % len(workers)]],
                      allow_other_workers=True)
        for i in range(count)
    ]  # fmt: skip
    values = await client.gather(futures)
    assert {
        worker for holders in (await client.who_has(futures)).values() for worker in holders
    } == set(workers)
    return futures, {future.key: value for future, value in zip(futures, values, strict=True)}


def test_a_stop_signal_moves_the_results_to_other_workers(
    cluster_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Two nannies closed as `dask worker` closes them on SIGTERM: first, within the budget, their
    workers' results move to a worker elsewhere (the same bytes, nothing computed again); no
    fresh worker replaces them; one line says what moved."""

    async def main() -> tuple[dict[Any, bytes], dict[Any, bytes], set[Any], list[str]]:
        async with (
            scheduler() as started,
            Nanny(started.address, nthreads=1, name="a-0", dashboard=False) as first,
            Nanny(started.address, nthreads=1, name="a-1", dashboard=False) as second,
            Worker(started.address, nthreads=1, name="b", dashboard=False) as other,
            Client(started.address, security=client_security(cluster_files), asynchronous=True)
            as client,
        ):  # fmt: skip
            await client.wait_for_workers(3)
            futures, before = await results_on(
                client, [first.worker_address, second.worker_address], 10
            )
            await asyncio.gather(
                *(n.close(timeout=10, reason="signal-15") for n in (first, second))
            )
            after = await asyncio.wait_for(client.gather(futures), HANG)
            keys = [future.key for future in futures]
            return (
                before,
                dict(zip(keys, after, strict=True)),
                set(other.data),
                [str(ws.name) for ws in started.workers.values()],
            )

    with dask.config.set({DRAIN_TIMEOUT: HANG}), caplog.at_level(logging.INFO):
        before, after, on_the_other, names = asyncio.run(main())
    assert after == before  # the same bytes: moved, not computed again
    assert set(before) <= on_the_other
    assert names == ["b"]
    assert "drained 2 workers in" in caplog.text and ": 10 results moved" in caplog.text


def test_a_lone_worker_stops_at_once_and_says_what_is_lost(
    cluster_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """No other worker to take them: the stop does not wait out its budget, and one line says how
    many results could not be moved."""

    async def main() -> float:
        async with (
            scheduler() as started,
            Nanny(started.address, nthreads=1, name="alone", dashboard=False) as nanny,
            Client(started.address, security=client_security(cluster_files), asynchronous=True)
            as client,
        ):  # fmt: skip
            await client.wait_for_workers(1)
            held, _ = await results_on(client, [nanny.worker_address], 5)
            began = time.monotonic()
            await nanny.close(timeout=10, reason="signal-15")
            assert all(future.status == "lost" for future in held)
            return time.monotonic() - began

    with dask.config.set({DRAIN_TIMEOUT: HANG}), caplog.at_level(logging.INFO):
        seconds = asyncio.run(main())
    assert seconds < HANG / 2
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("drain of")]
    assert line.startswith("drain of 1 workers, ")
    assert line.endswith(": 5 of 5 results could not be moved (no other worker could take them)")


class StandInScheduler:
    """A scheduler's rpc, as the drain uses it: `a` alone holds "x"; "y" is also elsewhere."""

    def __init__(self, retire: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.retire = retire

    async def retire_workers(self, **kwargs: Any) -> dict[str, Any]:
        return await self.retire()

    async def has_what(self, *, workers: list[str]) -> dict[str, Collection[Any]]:
        return {"a": ["x", "y"]}

    async def who_has(self, *, keys: list[Any]) -> dict[Any, Collection[str]]:
        return {"x": ["a"], "y": ["a", "b"]}


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


async def refused() -> dict[str, Any]:
    raise OSError("Timed out trying to connect")


@pytest.mark.parametrize(
    ("retire", "why"),
    [(never, "the drain budget of 0.2 s ran out"), (refused, "the scheduler failed: OSError(")],
)
def test_a_drain_ends_within_its_budget_whatever_the_scheduler_does(
    retire: Callable[[], Awaitable[dict[str, Any]]], why: str
) -> None:
    """A retirement that never ends is given up at the budget, one that fails at once ends the
    drain at once; either way the result the worker alone held is counted as lost, and why."""
    began = time.monotonic()
    drained = asyncio.run(drain_on_stop.drain(StandInScheduler(retire), ["a"], budget=0.2))
    assert time.monotonic() - began < 0.2 + drain_on_stop.COUNT_TIMEOUT
    assert (drained.held, drained.left) == (1, 1)
    assert f": 1 of 1 results could not be moved ({why}" in str(drained)


def test_a_drain_through_a_scheduler_that_does_not_answer_ends_at_once() -> None:
    """A scheduler that does not answer (gone, its address refusing): the drain gives up after
    COUNT_TIMEOUT, not its whole budget, and says it does not know what was lost."""

    class Gone(StandInScheduler):
        async def has_what(self, *, workers: list[str]) -> dict[str, Collection[Any]]:
            await never()
            return {}

    began = time.monotonic()
    drained = asyncio.run(drain_on_stop.drain(Gone(never), ["a"], budget=HANG))
    assert time.monotonic() - began < 2 * drain_on_stop.COUNT_TIMEOUT
    assert (drained.held, drained.left) == (None, None)
    assert str(drained).endswith(
        "how many results could not be moved is unknown (the scheduler did not answer within 1 s)"
    )


WORKER_FROM_THE_FORKED_FORKSERVER = """
import asyncio, json, os, sys
from pathlib import Path
import dask.config
from entrypoint.cluster import pid1_environment
from entrypoint.dask_config import fixed_config
files = json.loads(sys.argv[1])
dask.config.set(fixed_config(files["cert"], files["key"], files["ca"], dashboard_tls=True,
                             http_client_cert=True))
dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
import distributed
from multiprocessing import forkserver, resource_tracker
from distributed import Nanny, Scheduler
from entrypoint import forks
from entrypoint.preload import forked_forkserver

tracker, server = forked_forkserver.start(forks.fork)  # before any thread or event loop

def parent_of(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

async def main():
    async with Scheduler(host="127.0.0.1", port=0, protocol="tls", dashboard=False) as scheduler:
        async with Nanny(scheduler.address, nthreads=1, dashboard=False) as nanny:
            worker = nanny.process.pid
            return {
                "server": server, "tracker": tracker, "worker's parent": parent_of(worker),
                "server's parent": parent_of(server), "me": os.getpid(),
                "server in use": forkserver._forkserver._forkserver_pid,
                "tracker in use": resource_tracker._resource_tracker._pid,
                "same command line": Path(f"/proc/{worker}/cmdline").read_bytes()
                == Path("/proc/self/cmdline").read_bytes(),
            }

print(json.dumps(asyncio.run(main())))
"""


def test_worker_processes_fork_from_the_forkserver_forked_early(
    cluster_files: dict[str, Path],
) -> None:
    """A nanny's worker process forks from the forkserver `forked_forkserver.start` forked from
    this interpreter (no new interpreter, so the same command line), and multiprocessing keeps
    using that forkserver and its resource tracker. In an interpreter of its own: this one has
    threads and may not fork."""
    environ = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    paths = {name: str(path) for name, path in cluster_files.items()}
    result = subprocess.run(
        [sys.executable, "-c", WORKER_FROM_THE_FORKED_FORKSERVER, json.dumps(paths)],
        env={**pid1_environment(environ), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=HANG,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["server's parent"] == found["me"]
    assert found["worker's parent"] == found["server"] == found["server in use"]
    assert found["tracker in use"] == found["tracker"]
    assert found["same command line"] is True


class InProcessVMs:
    """The stand-in group's instances as in-process workers on the test's event loop: each
    instance's boot starts WORKERS_PER_VM workers named INSTANCE-0, INSTANCE-1 (as a worker VM's
    container names them); its halt closes them (a deleted VM's container stops)."""

    WORKERS_PER_VM = 2

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.address = ""
        self.workers: dict[str, list[Worker]] = {}

    def boot(self, instance: str) -> None:
        async def start() -> None:
            names = [f"{instance}-{i}" for i in range(self.WORKERS_PER_VM)]
            started = [Worker(self.address, nthreads=1, name=n, dashboard=False) for n in names]
            self.workers[instance] = list(await asyncio.gather(*started))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(HANG)

    def halt(self, instance: str) -> None:
        async def stop() -> None:
            await asyncio.gather(*(w.close(reason="vm-deleted") for w in self.workers[instance]))

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(HANG)


def retired_on(started: Scheduler, instances: list[str]) -> dict[str, Any]:
    """What the stand-in records at deleteInstances: the status of each worker of the instances."""
    return {
        str(ws.name): ws.status.name
        for ws in started.workers.values()
        if str(ws.name).rsplit("-", 1)[0] in instances
    }


def test_the_scheduler_sizes_its_group_of_worker_vms(
    cluster_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduler given a group of 2-worker VMs (min 1, max 3; the stand-in Compute API on
    loopback, the VMs in-process workers named after their instance) and short damping: it
    grows the empty group to its minimum, a burst of tasks grows it to the maximum and no
    further (resizes upward only); idle, it shrinks back to the minimum by deleteInstances, one VM
    a step, each VM's workers retired through the scheduler first: every result held across
    the grown group is still there, the same bytes; no other worker remains."""
    from tests.compute_stand_in import ManagedGroup, serve

    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    Found = tuple[dict[Any, bytes], dict[Any, bytes], set[str]]

    async def main(group: ManagedGroup, vms: InProcessVMs) -> Found:
        async with scheduler() as started:
            vms.address = started.address
            group.on_delete = lambda names: retired_on(started, names)
            async with Client(started.address, security=client_security(cluster_files),
                              asynchronous=True) as client:  # fmt: skip
                await client.wait_for_workers(2, timeout=HANG)  # the minimum: 1 VM
                burst = client.map(nap, [0.2] * 100, pure=False)
                await poll(lambda: len(started.workers) == 6)
                futures, before = await results_on(client, list(started.workers), 30)
                await client.gather(burst)
                await poll(lambda: len(group.instances) == 1 and group.target_size == 1)
                after = await client.gather(futures)
                names = {str(ws.name) for ws in started.workers.values()}
                await asyncio.gather(
                    *(w.close() for vm in group.instances for w in vms.workers[vm])
                )
                return before, dict(zip(before, after, strict=True)), names

    async def in_loop() -> Found:
        vms = InProcessVMs(asyncio.get_running_loop())
        group = ManagedGroup("test-project", "us-central1-a", "g-workers", "g-worker",
                             boot=vms.boot, halt=vms.halt)  # fmt: skip
        server, where = serve(group)
        given = Autoscale(1, 3, group.path, InProcessVMs.WORKERS_PER_VM, where,
                          f"http://{where}/compute/v1/")  # fmt: skip
        damping = {"interval": 0.2, "window": 1.5, "after-growth": 1, "retire-budget": HANG}
        # as the scheduler gets it: DASK_* variables (cluster.child_environment)
        variables = as_environment(
            {**given.config(), **{f"{AUTOSCALE}.{k}": v for k, v in damping.items()}}
        )
        try:
            with dask.config.set(dask.config.collect_env(variables)):
                result = await main(group, vms)
        finally:
            server.shutdown()
        calls.extend(group.calls)
        remaining.extend(vms.workers)
        return result

    calls: list[Any] = []
    remaining: list[str] = []
    with caplog.at_level(logging.INFO):
        before, after, names = asyncio.run(asyncio.wait_for(in_loop(), 4 * HANG))
    assert after == before  # moved, never computed again
    resized = [c.args for c in calls if c.verb == "resize"]
    assert resized == [1, 3]  # the minimum, then the maximum at once; never down
    deletions = [c for c in calls if c.verb == "deleteInstances"]
    assert [len(c.args) for c in deletions] == [1, 1]  # a VM a step
    for call in deletions:  # every worker on it retired (not running) before it went
        assert set(call.seen.values()) == {"closing_gracefully"}, call.seen
        assert len(call.seen) == InProcessVMs.WORKERS_PER_VM
    [kept] = set(remaining) - {vm for c in deletions for vm in c.args}
    assert names == {f"{kept}-0", f"{kept}-1"}
    assert caplog.text.count("autoscale: retiring ") == 2

"""What distributed lacks for a cluster that only its certificate holders can use, added to every
scheduler, nanny and worker process as their preload (`distributed.*.preload`).

distributed imports a preload while it constructs the server, before it listens on any port or
builds its HTTP server or handler table, so what this module changes at import is in place from the
first connection on. Each change is small and says which upstream behaviour it covers:

- TLS listeners await the handshake with no time limit (`comm/tcp.py`): a peer that sends part of a
  ClientHello holds a connection and a file forever. Ours drop it after HANDSHAKE_TIMEOUT.
- The HTTP servers (the scheduler's dashboard on 8787, each worker's /health and /metrics) never
  ask for a client certificate (`node.py::start_http_server`). Ours get the context of the cluster's
  comms (distributed's `Security`: the CA, a client certificate required, ciphers, minimum version),
  and tornado drops connections idle for HANDSHAKE_TIMEOUT, stalled handshakes included.
- A client whose Python minor version or dask, distributed or cloudpickle release differs from the
  cluster's is refused when it registers, with a message naming both versions: the tasks it pickles
  would fail on the workers.
- A worker the scheduler removes (`client.retire_workers`, a lost heartbeat) closes its process but
  not its nanny, which starts a fresh one: the container keeps its N workers.
- A renewed certificate (`rotation`, on SIGHUP) is loaded into every TLS context of the process
  within CERTIFICATE_LOOK_INTERVAL; distributed reads its certificate files only once.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dask.config
import distributed.utils
from distributed import Scheduler, Worker
from distributed.comm import registry
from distributed.comm.core import Comm, CommClosedError
from distributed.comm.tcp import TLSBackend, TLSListener
from distributed.node import ServerNode
from distributed.security import Security
from distributed.versions import get_versions
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.iostream import IOStream

from entrypoint.dask_config import DASHBOARD_TLS, HTTP_CLIENT_CERT, TLS

HANDSHAKE_TIMEOUT = 10.0  # seconds; a real handshake over a slow link takes well under one
CERTIFICATE_LOOK_INTERVAL = 2.0  # seconds between looks for a renewed certificate file
CHECKED_PACKAGES = ("dask", "distributed", "cloudpickle")
# why a worker is closed when the scheduler removes it (scheduler.py: remove_worker, close_worker)
REMOVED_BY_SCHEDULER = {"scheduler-remove-worker", "scheduler-close-worker"}

logger = logging.getLogger("distributed.preloading")


class BoundedHandshakeTLSListener(TLSListener):
    async def _prepare_stream(self, stream: IOStream, address: str) -> IOStream | None:
        prepare: Callable[..., Awaitable[IOStream | None]] = super()._prepare_stream
        try:
            prepared = await asyncio.wait_for(prepare(stream, address), HANDSHAKE_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "Listener on %r: no TLS handshake from %r within %.0f s: closed",
                self.listen_address, address, HANDSHAKE_TIMEOUT,
            )  # fmt: skip
            stream.close()
            return None
        return prepared

    async def _handle_stream(self, stream: IOStream, address: tuple[str, int]) -> None:
        handle: Callable[..., Awaitable[None]] = super()._handle_stream
        try:
            await handle(stream, address)
        except CommClosedError:  # upstream lets it out as a traceback when a peer hangs up at once
            logger.info("Listener on %r: %r hung up at once", self.listen_address, address)


class BoundedHandshakeTLSBackend(TLSBackend):
    _listener_class = BoundedHandshakeTLSListener


def http_tls_context(role: str) -> ssl.SSLContext:
    """The cluster's own server context for `role` (client certificates from the CA required),
    or, when the operator has a proxy of their own in front, the same without that requirement."""
    context: ssl.SSLContext = Security(require_encryption=True).get_listen_args(role)["ssl_context"]
    if not dask.config.get(HTTP_CLIENT_CERT, True):
        context.verify_mode = ssl.CERT_NONE
    return context


_start_http_server: Callable[..., Any] = ServerNode.start_http_server


def start_http_server(
    self: ServerNode, routes: Any, dashboard_address: Any, default_port: int = 0, **kwargs: Any
) -> Any:
    if not dask.config.get(f"{DASHBOARD_TLS}.cert", None):  # plain HTTP, as configured
        return _start_http_server(self, routes, dashboard_address, default_port, **kwargs)
    context = http_tls_context("scheduler" if isinstance(self, Scheduler) else "worker")
    # with a certificate configured, distributed would build its own context and ignore ours
    with dask.config.set({f"{DASHBOARD_TLS}.cert": None}):
        return _start_http_server(
            self, routes, dashboard_address, default_port, ssl_options=context
        )


def client_mismatch(client_versions: dict[str, Any] | None) -> str | None:
    """Why a client with these versions cannot use this cluster, or None."""
    ours, theirs = get_versions()["packages"], (client_versions or {}).get("packages") or {}
    ours_python, theirs_python = _minor(ours.get("python")), _minor(theirs.get("python"))
    differences = []
    if ours_python != theirs_python:
        differences.append(f"Python {theirs_python} (the cluster: {ours_python})")
    differences += [
        f"{name} {theirs.get(name)} (the cluster: {ours.get(name)})"
        for name in CHECKED_PACKAGES
        if theirs.get(name) != ours.get(name)
    ]
    if not differences:
        return None
    return (
        f"refused: this client runs {', '.join(differences)}; tasks it pickles would fail on the "
        "workers. Connect from a client with the cluster's versions (make client)"
    )


def _minor(python: object) -> str:
    return ".".join(str(python).split(".")[:2])


_add_client: Callable[..., Awaitable[None]] = Scheduler.add_client


async def add_client(self: Scheduler, comm: Comm, client: str, versions: dict[str, Any]) -> None:
    problem = client_mismatch(versions)
    if problem is None:
        return await _add_client(self, comm, client, versions)
    logger.warning("Client %s %s", client, problem.replace("this client runs", "runs"))
    # the client raises ImportError with this text (client.py: _ensure_connected)
    await comm.write([{"op": "stream-start", "error": problem}])
    comm.abort()


class CertificateWatch:
    """Loads a renewed certificate (see `rotation`) into every TLS context of `server`: its
    listeners, its outgoing connections, its HTTP server. Open connections keep theirs."""

    def __init__(self, server: ServerNode) -> None:
        self.server = server
        self.cert = dask.config.get(f"{TLS}.scheduler.cert")
        self.key = dask.config.get(f"{TLS}.scheduler.key")
        self.seen = self._stamp()

    def _stamp(self) -> tuple[int, int]:
        info = Path(self.cert).stat()  # the file is replaced, never rewritten: a new inode
        return info.st_ino, info.st_mtime_ns

    def look(self) -> None:
        stamp = self._stamp()
        if stamp == self.seen:
            return
        contexts = self.contexts()
        for context in contexts:
            context.load_cert_chain(self.cert, self.key)
        self.seen = stamp
        logger.info("Loaded the renewed certificate into %d TLS contexts", len(contexts))

    def contexts(self) -> list[ssl.SSLContext]:
        server: Any = self.server  # Scheduler, Nanny or Worker: all have these
        found = [server.connection_args.get("ssl_context")]
        found += [listener.server_args.get("ssl_options") for listener in server.listeners]
        found.append(getattr(getattr(server, "http_server", None), "ssl_options", None))
        unique = {id(c): c for c in found if isinstance(c, ssl.SSLContext)}
        return list(unique.values())


def dask_setup(server: ServerNode) -> None:
    """Called by distributed once the server has started."""
    if dask.config.get(f"{TLS}.scheduler.cert", None):
        watch = CertificateWatch(server)
        callback = PeriodicCallback(watch.look, CERTIFICATE_LOOK_INTERVAL * 1000)
        server.periodic_callbacks["dask-tls-certificate"] = callback  # stopped with the server
        callback.start()
    if isinstance(server, Worker) and server.nanny:
        close = server.close

        async def close_keeping_the_nanny(reason: str = "worker-close", **kwargs: Any) -> Any:
            if reason in REMOVED_BY_SCHEDULER:
                kwargs["nanny"] = False  # the nanny then starts a fresh worker process
            return await close(reason=reason, **kwargs)

        server.stream_handlers["close"] = close_keeping_the_nanny


def lean_forkserver() -> None:
    """Workers forked from the forkserver start from `distributed` alone. distributed's own
    preload of the forkserver also imports every optional package it knows (pandas, pyarrow with
    it) into this process and the forkserver: measured at 2 workers, 274 MiB idle against 204 MiB
    and a slower start (3.1 s against 2.1 s to ready). A worker imports pandas when a task first
    needs it, as a spawned one does."""
    if dask.config.get("distributed.worker.multiprocessing-method") != "forkserver":
        return
    if not distributed.utils._forkserver_preload_set:  # distributed's own flag (utils.mp_context)
        multiprocessing.get_context("forkserver").set_forkserver_preload(["distributed"])
        distributed.utils._forkserver_preload_set = True


registry.backends["tls"] = BoundedHandshakeTLSBackend()
HTTPServer.configure(None, idle_connection_timeout=HANDSHAKE_TIMEOUT)
ServerNode.start_http_server = start_http_server  # type: ignore[method-assign,assignment]
Scheduler.add_client = add_client  # type: ignore[method-assign]
lean_forkserver()

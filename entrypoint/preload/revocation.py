"""The CA's revocation list (`DASK_CLUSTER_CRL`, `certs revoke`) is enforced on every port of the
process, and a new list (SIGHUP, `entrypoint.rotation`) takes effect without a restart: new
handshakes of a revoked certificate fail, and connections already open with one are closed.

Upstream: `distributed/security.py` (`Security._get_tls_context`) builds every TLS context with
the CA and no revocation list, and reads its files once; `distributed/core.py` (`Server`) and
tornado's HTTP server keep a connection open as long as the peer does, whatever becomes of its
certificate. Ours add the list to each context as it is made (OpenSSL then refuses a revoked
peer's handshake with "certificate revoked"), watch the list's file, load a new one into every
context the server holds (OpenSSL keeps every list it was given and uses the one with the latest
lastUpdate, which `certs revoke` makes later each time), close the comms and HTTP connections
(dashboard websockets included) whose certificate it revokes, and refuse such a peer after the
handshake too: a resumed TLS session is not verified again.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
from cryptography import x509
from distributed.comm.core import Comm
from distributed.core import Server
from distributed.node import ServerNode
from distributed.security import Security
from distributed.utils import NoOpAwaitable
from tornado import httputil
from tornado.ioloop import PeriodicCallback

from entrypoint.dask_config import CRL_FILE
from entrypoint.preload.certificate_reload import tls_contexts
from entrypoint.preload.peers import (
    certificate_of,
    comm_certificate,
    gate_http,
    refuse,
    request_stream,
    subject,
)

CRL_LOOK_INTERVAL = 2.0  # seconds between looks for a new list

logger = logging.getLogger("distributed.preloading")


class RevocationList:
    """The list this process enforces: its file, and the serials it revokes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.serials: frozenset[int] = frozenset()
        self.stamp: tuple[int, int] | None = None
        if path:
            self.load()

    def load(self) -> bool:
        """Read the file again if it was replaced; True when it was."""
        info = Path(self.path).stat()  # replaced whole (rotation), never rewritten: a new inode
        stamp = (info.st_ino, info.st_mtime_ns)
        if stamp == self.stamp:
            return False
        crl = x509.load_pem_x509_crl(Path(self.path).read_bytes())
        self.serials = frozenset(entry.serial_number for entry in crl)
        self.stamp = stamp
        return True

    def revokes(self, certificate: x509.Certificate | None) -> bool:
        return certificate is not None and certificate.serial_number in self.serials

    def add_to(self, context: ssl.SSLContext) -> None:
        context.load_verify_locations(cafile=self.path)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


CURRENT = RevocationList("")
_open_http: weakref.WeakSet[Any] = weakref.WeakSet()  # streams that made a request to us
_upstream_context: Callable[..., ssl.SSLContext | None] = Security._get_tls_context
_upstream_handle_comm: Callable[..., Any] = Server.handle_comm
_upstream_http: Callable[..., Any] = ServerNode.start_http_server


def _get_tls_context(self: Security, tls: Any, purpose: Any) -> ssl.SSLContext | None:
    context: ssl.SSLContext | None = _upstream_context(self, tls, purpose)
    if context is not None and CURRENT.path:
        CURRENT.add_to(context)
    return context


def revoked_reason(certificate: x509.Certificate) -> str:
    serial = certificate.serial_number
    return f"refused: the certificate {subject(certificate)} (serial {serial:x}) is revoked"


def handle_comm(self: Server, comm: Comm) -> Any:
    certificate = comm_certificate(comm)
    if not CURRENT.revokes(certificate):
        return _upstream_handle_comm(self, comm)
    assert certificate is not None
    logger.warning("Refused the revoked certificate %s from %s", subject(certificate),
                   comm.peer_address)  # fmt: skip
    self._ongoing_background_tasks.call_soon(refuse, comm, revoked_reason(certificate))
    return NoOpAwaitable()


def http_reason(request: httputil.HTTPServerRequest) -> str | None:
    stream = request_stream(request)
    certificate = certificate_of(stream)
    if CURRENT.revokes(certificate):
        assert certificate is not None
        return revoked_reason(certificate)
    if stream is not None:
        _open_http.add(stream)
    return None


def start_http_server(self: ServerNode, *args: Any, **kwargs: Any) -> Any:
    started = _upstream_http(self, *args, **kwargs)
    if CURRENT.path:
        gate_http(self.http_application, http_reason)
    return started


class RevocationWatch:
    """Loads a new list into every TLS context of `server` and closes what it revokes."""

    def __init__(self, server: ServerNode) -> None:
        self.server = server
        self.apply()  # contexts made before our preload was imported (a worker's outgoing one)

    def look(self) -> None:
        if CURRENT.load():
            self.apply()

    def apply(self) -> None:
        contexts = tls_contexts(self.server)
        for context in contexts:
            CURRENT.add_to(context)
        closed = self.close_revoked()
        logger.info("Revocation list of %d serials in %d TLS contexts; closed %d connections",
                    len(CURRENT.serials), len(contexts), closed)  # fmt: skip

    def close_revoked(self) -> int:
        server: Any = self.server
        comms = [comm for comm in list(server._comms) if CURRENT.revokes(comm_certificate(comm))]
        streams = [s for s in list(_open_http) if CURRENT.revokes(certificate_of(s))]
        for comm in comms:
            logger.warning("Closing %s: its certificate is revoked", comm.peer_address)
            comm.abort()
        for stream in streams:
            logger.warning("Closing an HTTP connection: its certificate is revoked")
            stream.close()
        return len(comms) + len(streams)


def setup(server: ServerNode) -> None:
    if not CURRENT.path:
        return
    watch = RevocationWatch(server)
    callback = PeriodicCallback(watch.look, CRL_LOOK_INTERVAL * 1000)
    server.periodic_callbacks["dask-tls-revocation"] = callback  # stopped with the server
    callback.start()


def install() -> None:
    """With a list configured: enforce it from the first context on. Once per process."""
    global CURRENT, _upstream_handle_comm, _upstream_http
    path = dask.config.get(CRL_FILE, "") or ""
    if not path or Security._get_tls_context is _get_tls_context:
        return
    CURRENT = RevocationList(path)
    _upstream_handle_comm = Server.handle_comm
    _upstream_http = ServerNode.start_http_server
    Security._get_tls_context = _get_tls_context  # type: ignore[method-assign]
    Server.handle_comm = handle_comm  # type: ignore[method-assign]
    ServerNode.start_http_server = start_http_server  # type: ignore[method-assign]

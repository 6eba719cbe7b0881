"""A renewed certificate (`entrypoint.rotation`, on SIGHUP) reaches every TLS context of the
process within CERTIFICATE_LOOK_INTERVAL: its listeners, its outgoing connections, its HTTP server.
Open connections keep theirs.

Upstream: `distributed/security.py` (`Security._get_tls_context`) reads the certificate files once,
when a server builds its contexts; nothing reads them again. Ours watch the certificate file (it
is replaced whole, so a new inode) and load the pair into the contexts the server holds.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import dask.config
from distributed.node import ServerNode
from tornado.ioloop import PeriodicCallback

from entrypoint.dask_config import TLS

CERTIFICATE_LOOK_INTERVAL = 2.0  # seconds between looks for a renewed certificate file

logger = logging.getLogger("distributed.preloading")


class CertificateWatch:
    """Loads a renewed certificate into every TLS context of `server`."""

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
        contexts = tls_contexts(self.server)
        for context in contexts:
            context.load_cert_chain(self.cert, self.key)
        self.seen = stamp
        logger.info("Loaded the renewed certificate into %d TLS contexts", len(contexts))


def tls_contexts(node: ServerNode) -> list[ssl.SSLContext]:
    """Every TLS context a server holds: its outgoing one, its listeners', its HTTP server's."""
    server: Any = node  # Scheduler, Nanny or Worker: all have these
    found = [server.connection_args.get("ssl_context")]
    found += [listener.server_args.get("ssl_options") for listener in server.listeners]
    found.append(getattr(getattr(server, "http_server", None), "ssl_options", None))
    unique = {id(c): c for c in found if isinstance(c, ssl.SSLContext)}
    return list(unique.values())


def setup(server: ServerNode) -> None:
    if not dask.config.get(f"{TLS}.scheduler.cert", None):
        return
    watch = CertificateWatch(server)
    callback = PeriodicCallback(watch.look, CERTIFICATE_LOOK_INTERVAL * 1000)
    server.periodic_callbacks["dask-tls-certificate"] = callback  # stopped with the server
    callback.start()

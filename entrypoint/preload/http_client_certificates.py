"""The HTTP servers (the scheduler's dashboard on 8787, each worker's /health and /metrics) ask
for a client certificate from the cluster's CA, from the moment they listen.

Upstream: `distributed/node.py`, `ServerNode.start_http_server` builds its TLS context from the
`distributed.scheduler.dashboard.tls.*` keys with `ssl.create_default_context(...)` and never sets
`verify_mode`: no client certificate is asked for, and none of the comms' TLS profile (ciphers,
minimum version) applies. Ours hand it the context of the cluster's comms (distributed's
`Security`: the CA, a client certificate required, ciphers, minimum version); tornado's HTTP
server also drops connections idle for HANDSHAKE_TIMEOUT, stalled handshakes included.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import dask.config
from distributed import Scheduler
from distributed.node import ServerNode
from distributed.security import Security
from tornado.httpserver import HTTPServer

from entrypoint.dask_config import DASHBOARD_TLS, HTTP_CLIENT_CERT
from entrypoint.preload.handshake_timeout import HANDSHAKE_TIMEOUT

_upstream: Callable[..., Any] = ServerNode.start_http_server


def http_tls_context(role: str) -> ssl.SSLContext:
    """The cluster's own server context for `role` (client certificates from the CA required),
    or, when the operator has a proxy of their own in front, the same without that requirement."""
    context: ssl.SSLContext = Security(require_encryption=True).get_listen_args(role)["ssl_context"]
    if not dask.config.get(HTTP_CLIENT_CERT, True):
        context.verify_mode = ssl.CERT_NONE
    return context


def start_http_server(
    self: ServerNode, routes: Any, dashboard_address: Any, default_port: int = 0, **kwargs: Any
) -> Any:
    if not dask.config.get(f"{DASHBOARD_TLS}.cert", None):  # plain HTTP, as configured
        return _upstream(self, routes, dashboard_address, default_port, **kwargs)
    context = http_tls_context("scheduler" if isinstance(self, Scheduler) else "worker")
    # with a certificate configured, distributed would build its own context and ignore ours
    with dask.config.set({f"{DASHBOARD_TLS}.cert": None}):
        return _upstream(self, routes, dashboard_address, default_port, ssl_options=context)


def install() -> None:
    HTTPServer.configure(None, idle_connection_timeout=HANDSHAKE_TIMEOUT)
    ServerNode.start_http_server = start_http_server  # type: ignore[method-assign,assignment]

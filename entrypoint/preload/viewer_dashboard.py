"""A viewer's certificate opens the HTTP ports (the dashboard's pages and websockets, /metrics,
/health) for reading only: any method but GET and HEAD, and the routes that act on the cluster
(`/api/...`, `distributed.http.scheduler.api`, should a user enable it) or add to it
(`/eventstream`, which adds a scheduler plugin), answer 403.

Upstream: `distributed/node.py`, `ServerNode.start_http_server` serves every route of
`distributed.scheduler.http.routes` to anyone the server's TLS context lets in: with the
`api_v1` routes enabled, a certificate that can read the dashboard could retire workers. Ours put
a check in front of the routing of the server's tornado application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed.node import ServerNode
from tornado import httputil

from entrypoint.preload.peers import certificate_of, gate_http, is_viewer, request_stream

READ_METHODS = ("GET", "HEAD")
ACTING_PREFIXES = ("/api/", "/eventstream")  # under the dashboard's own prefix, if any

_upstream: Callable[..., Any] | None = None


def viewer_reason(request: httputil.HTTPServerRequest) -> str | None:
    certificate = certificate_of(request_stream(request))
    if certificate is None or not is_viewer(certificate):
        return None
    path = request.path or ""
    if request.method in READ_METHODS and not any(part in path for part in ACTING_PREFIXES):
        return None
    return "a viewer's certificate reads the dashboard only; this request would act on the cluster"


def start_http_server(self: ServerNode, *args: Any, **kwargs: Any) -> Any:
    assert _upstream is not None
    started = _upstream(self, *args, **kwargs)
    gate_http(self.http_application, viewer_reason)
    return started


def install() -> None:
    """After `http_client_certificates`: ours wraps whatever start_http_server is then."""
    global _upstream
    _upstream = ServerNode.start_http_server
    ServerNode.start_http_server = start_http_server  # type: ignore[method-assign]

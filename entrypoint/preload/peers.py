"""What the preload knows of a TLS peer: its certificate (parsed once per certificate), whether it
is a viewer's, and how a peer the cluster will not serve is turned away, on the comms (8786, the
workers' and nannies' ports) and on the HTTP ports. Not a change of upstream behaviour itself: the
helpers of `viewer_comms`, `viewer_dashboard` and `revocation`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable
from typing import Any

from cryptography import x509
from distributed.comm.core import Comm
from distributed.core import error_message
from tornado import httputil
from tornado.web import Application, RequestHandler

from entrypoint.contract import VIEWER_OID

VIEWER = x509.ObjectIdentifier(VIEWER_OID)
REFUSAL_READ_TIMEOUT = 10.0  # seconds for a refused peer to send its first message
HttpCheck = Callable[[httputil.HTTPServerRequest], str | None]  # None: serve it; else why not

logger = logging.getLogger("distributed.preloading")


@functools.lru_cache(maxsize=1024)
def _parsed(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def certificate_of(stream: Any) -> x509.Certificate | None:
    """The certificate the peer of a tornado stream (a comm's or an HTTP connection's) presented,
    once its handshake is done; None when there is none (plain TCP, no certificate asked for)."""
    sock = getattr(stream, "socket", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        der = sock.getpeercert(binary_form=True)
    except (ValueError, OSError):  # not connected, or the handshake is not over
        return None
    return _parsed(der) if der else None


def comm_certificate(comm: Comm) -> x509.Certificate | None:
    return certificate_of(getattr(comm, "stream", None))


def is_viewer(certificate: x509.Certificate) -> bool:
    """Does the certificate carry the viewer's purpose (`certs new --viewer`, or any CA that
    puts VIEWER_OID in its extendedKeyUsage)?"""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False
    return VIEWER in usages


def subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()[:80]


async def refuse(comm: Comm, reason: str) -> None:
    """Answer the peer's first message with `reason`, then close. A Client reads its
    registration's answer as an error and raises it (`ImportError(reason)`, client.py
    `_ensure_connected`); an rpc call raises `PermissionError(reason)` (core.py `send_recv`)."""
    try:
        message = await asyncio.wait_for(comm.read(), REFUSAL_READ_TIMEOUT)
        if isinstance(message, dict) and message.get("op") == "register-client":
            await comm.write([{"op": "stream-start", "error": reason}])
        else:
            await comm.write(error_message(PermissionError(reason), status="uncaught-error"))
    except (OSError, TimeoutError):  # the peer left first (CommClosedError is an OSError)
        pass
    finally:
        comm.abort()


class Refused(RequestHandler):
    """403 with the reason, whatever the method (a websocket's upgrade included)."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.reason + "\n")


def gate_http(application: Application, check: HttpCheck) -> None:
    """Every request to `application` first goes through `check`: a reason turns it away with
    403 before any handler (tornado's router, `Application.find_handler`) sees it."""
    upstream = application.find_handler

    def find_handler(request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        reason = check(request)
        if reason is None:
            return upstream(request, **kwargs)
        return application.get_handler_delegate(request, Refused, {"reason": reason})

    application.find_handler = find_handler  # type: ignore[method-assign]


def request_stream(request: httputil.HTTPServerRequest) -> Any:
    return getattr(request.connection, "stream", None)

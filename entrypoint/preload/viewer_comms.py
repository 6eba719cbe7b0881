"""A viewer's certificate (`certs new --viewer`: the VIEWER purpose in its extendedKeyUsage) opens
no comm: the scheduler (8786), the workers and the nannies answer its first message with an error
saying it is a viewer's certificate, and close.

Upstream: `distributed/core.py`, `Server.handle_comm` serves every peer whose certificate the CA
issued, whatever it was issued for: any certificate is a shell (`client.run` on every worker).
Ours look at the certificate the peer presented before the comm reaches any handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from distributed.comm.core import Comm
from distributed.core import Server
from distributed.utils import NoOpAwaitable

from entrypoint.preload.peers import comm_certificate, is_viewer, refuse, subject

logger = logging.getLogger("distributed.preloading")
_upstream: Callable[[Server, Comm], Any] = Server.handle_comm


def viewer_refusal(name: str) -> str:
    return (
        f"refused: {name} is a viewer's certificate, which opens the dashboard only; connect "
        "with a client certificate (certs new|renew --client NAME)"
    )


def handle_comm(self: Server, comm: Comm) -> Any:
    certificate = comm_certificate(comm)
    if certificate is None or not is_viewer(certificate):
        return _upstream(self, comm)
    logger.warning("Refused %s from %s: a viewer's certificate", subject(certificate),
                   comm.peer_address)  # fmt: skip
    self._ongoing_background_tasks.call_soon(refuse, comm, viewer_refusal(subject(certificate)))
    return NoOpAwaitable()


def install() -> None:
    Server.handle_comm = handle_comm  # type: ignore[method-assign]

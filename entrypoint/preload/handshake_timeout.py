"""TLS listeners drop a peer that does not finish its handshake within HANDSHAKE_TIMEOUT.

Upstream: `distributed/comm/tcp.py`, `TLSListener._prepare_stream` awaits
`stream.wait_for_handshake()` with no time limit, so a peer that sends part of a ClientHello holds
a connection and a file forever; and `BaseTCPListener._handle_stream` lets a `CommClosedError` out
as a traceback when a peer hangs up at once. Ours replace the "tls" backend in distributed's comm
registry with one whose listener bounds the first and logs the second in one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from distributed.comm import registry
from distributed.comm.core import CommClosedError
from distributed.comm.tcp import TLSBackend, TLSListener
from tornado.iostream import IOStream

HANDSHAKE_TIMEOUT = 10.0  # seconds; a real handshake over a slow link takes well under one

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
        except CommClosedError:
            logger.info("Listener on %r: %r hung up at once", self.listen_address, address)


class BoundedHandshakeTLSBackend(TLSBackend):
    _listener_class = BoundedHandshakeTLSListener


def install() -> None:
    registry.backends["tls"] = BoundedHandshakeTLSBackend()

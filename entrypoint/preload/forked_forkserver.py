"""Worker processes fork from a forkserver that `dask worker` forked from itself as it started,
before its event loop: distributed is already imported there, so a worker process starts in
milliseconds and shares every page of it.

Upstream: `multiprocessing/forkserver.py`, `ForkServer.ensure_running`, which distributed's
nannies reach through `get_mp_context` (`distributed/utils.py`) when their first worker process
starts: it execs a new interpreter (`python -c 'from multiprocessing.forkserver import main; ...'`)
that imports its preload, distributed, all over again, on the critical path. `start` runs the same
`main` in a fork and hands its address, its alive pipe and its pid to the `ForkServer` singleton,
which then finds it running and uses it. Should it die, `ensure_running` execs the stdlib's own, as
before (with lean_forkserver's preload).

Not part of the preload's imports: it must run before `dask worker` starts a thread or an event
loop, which it does before any preload is imported (`entrypoint.forks.become` calls it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from multiprocessing import connection, forkserver, util
from pathlib import Path
from typing import Any

Fork = Callable[[Callable[[], int]], int]  # entrypoint.forks.fork


def start(fork: Fork) -> int:
    """Fork the forkserver with `fork` and make it this process's; return its pid."""
    address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            Path(address).chmod(0o600)
        listener.listen()
        # every client holds the write end of "alive"; when the last one exits, the server does
        alive_r, alive_w = os.pipe()

        def serve() -> int:
            os.close(alive_w)
            forkserver.main(listener.fileno(), alive_r, [])
            return 0

        try:
            pid = fork(serve)
        except BaseException:
            os.close(alive_w)
            raise
        finally:
            os.close(alive_r)
    server: Any = forkserver._forkserver  # the singleton every ForkServer call goes through
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    return pid

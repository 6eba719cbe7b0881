"""Worker processes fork from a forkserver that `dask worker` forked from itself as it started,
before its event loop: distributed is already imported there, so a worker process starts in
milliseconds and shares every page of it. The forkserver's resource tracker is forked too.

Upstream: `multiprocessing/forkserver.py`, `ForkServer.ensure_running`, which distributed's
nannies reach through `get_mp_context` (`distributed/utils.py`) when their first worker process
starts: it execs a new interpreter (`python -c 'from multiprocessing.forkserver import main; ...'`)
that imports its preload, distributed, all over again, on the critical path; and first
`multiprocessing/resource_tracker.py`, `ResourceTracker.ensure_running`, which execs one more
(`... resource_tracker import main; main(fd)`, 10 MiB of its own). `start` runs each `main` in a
fork and hands its pipe, address and pid to the module's singleton, which then finds it running and
uses it. Should one die, its `ensure_running` execs the stdlib's own, as before (the forkserver
with lean_forkserver's preload).

Not part of the preload's imports: it must run before `dask worker` starts a thread or an event
loop, which it does before any preload is imported (`entrypoint.forks.become` calls it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from multiprocessing import connection, forkserver, resource_tracker, util
from pathlib import Path
from typing import Any

Fork = Callable[[Callable[[], int]], int]  # entrypoint.forks.fork


def start(fork: Fork) -> tuple[int, int]:
    """Fork the resource tracker, then the forkserver, with `fork`, and make them this process's;
    return their pids."""
    tracker = start_resource_tracker(fork)
    return tracker, start_forkserver(fork)


def start_resource_tracker(fork: Fork) -> int:
    # it runs until every holder of the pipe's write end (we and our worker processes) is gone
    reader, writer = os.pipe()

    def track() -> int:
        os.close(writer)
        resource_tracker.main(reader)
        return 0

    pid = fork_holding(fork, track, ours=writer, theirs=reader)
    tracker: Any = resource_tracker._resource_tracker
    tracker._fd, tracker._pid = writer, pid
    return pid


def start_forkserver(fork: Fork) -> int:
    tracker: Any = resource_tracker._resource_tracker
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
            os.close(tracker._fd)  # the tracker ends with its clients, not with us
            forkserver.main(listener.fileno(), alive_r, [])
            return 0

        pid = fork_holding(fork, serve, ours=alive_w, theirs=alive_r)
    server: Any = forkserver._forkserver  # the singleton every ForkServer call goes through
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    return pid


def fork_holding(fork: Fork, run: Callable[[], int], *, ours: int, theirs: int) -> int:
    """`fork(run)` where `run` keeps the pipe end `theirs` and we keep `ours`: each closes the
    other's (ours too, if the fork fails)."""
    try:
        return fork(run)
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)

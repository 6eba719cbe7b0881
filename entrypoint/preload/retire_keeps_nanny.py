"""A worker the scheduler retires or removes closes its process but not its nanny, which starts a
fresh one: a container keeps its N workers (to run fewer, start it with a smaller NUM_WORKERS).

Upstream: `distributed/scheduler.py` (`retire_workers`, `remove_worker`, `close_worker`) sends the
worker a "close" message, and `distributed/worker.py` (`Worker.close`, the "close" stream handler)
then closes its nanny too (`nanny=True`): in a container of fixed size, the worker would be gone
for good. Ours replace the worker's "close" stream handler with one that keeps the nanny when the
scheduler is the one closing it.
"""

from __future__ import annotations

from typing import Any

from distributed import Worker
from distributed.node import ServerNode

# why a worker is closed when the scheduler removes it (scheduler.py: remove_worker, close_worker)
REMOVED_BY_SCHEDULER = {"scheduler-remove-worker", "scheduler-close-worker"}


def setup(server: ServerNode) -> None:
    if not isinstance(server, Worker) or not server.nanny:
        return
    close = server.close

    async def close_keeping_the_nanny(reason: str = "worker-close", **kwargs: Any) -> Any:
        if reason in REMOVED_BY_SCHEDULER:
            kwargs["nanny"] = False  # the nanny then starts a fresh worker process
        return await close(reason=reason, **kwargs)

    server.stream_handlers["close"] = close_keeping_the_nanny

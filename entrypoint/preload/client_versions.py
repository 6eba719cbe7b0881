"""A client whose Python minor version or dask, distributed or cloudpickle release differs from
the cluster's is refused when it registers, with a message naming both versions.

Upstream: `distributed/scheduler.py`, `Scheduler.add_client` accepts any client and only warns
about mismatched versions (`distributed/versions.py`), while the tasks such a client pickles fail
on the workers. Ours answer the registration with an error, which the client raises as an
`ImportError` with our text (`distributed/client.py`, `Client._ensure_connected`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from distributed import Scheduler
from distributed.comm.core import Comm
from distributed.versions import get_versions

CHECKED_PACKAGES = ("dask", "distributed", "cloudpickle")

logger = logging.getLogger("distributed.preloading")
_upstream: Callable[..., Awaitable[None]] = Scheduler.add_client


def client_mismatch(client_versions: dict[str, Any] | None) -> str | None:
    """Why a client with these versions cannot use this cluster, or None."""
    ours, theirs = get_versions()["packages"], (client_versions or {}).get("packages") or {}
    ours_python, theirs_python = _minor(ours.get("python")), _minor(theirs.get("python"))
    differences = []
    if ours_python != theirs_python:
        differences.append(f"Python {theirs_python} (the cluster: {ours_python})")
    differences += [
        f"{name} {theirs.get(name)} (the cluster: {ours.get(name)})"
        for name in CHECKED_PACKAGES
        if theirs.get(name) != ours.get(name)
    ]
    if not differences:
        return None
    return (
        f"refused: this client runs {', '.join(differences)}; tasks it pickles would fail on the "
        "workers. Connect from a client with the cluster's versions (make client)"
    )


def _minor(python: object) -> str:
    return ".".join(str(python).split(".")[:2])


async def add_client(self: Scheduler, comm: Comm, client: str, versions: dict[str, Any]) -> None:
    problem = client_mismatch(versions)
    if problem is None:
        return await _upstream(self, comm, client, versions)
    logger.warning("Client %s %s", client, problem.replace("this client runs", "runs"))
    await comm.write([{"op": "stream-start", "error": problem}])
    comm.abort()


def install() -> None:
    Scheduler.add_client = add_client  # type: ignore[method-assign]

"""A scheduler given a managed instance group of worker VMs (AUTOSCALE, `gce --autoscale`) sizes
it from its own demand, from inside: entrypoint.autoscaling.

Upstream: `distributed/deploy/adaptive.py` (`Adaptive`) reads `Scheduler.adaptive_target()` and
`Scheduler.workers_to_close()` from a client-side Cluster object and scales that; the scheduler
itself sizes nothing. Ours runs the same reading in the scheduler's own event loop (as
dask-gateway does), so that the loop lives exactly as long as the scheduler, needs no client
certificate and no other process, and retires workers through the scheduler object itself.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

import dask.config
from dask.utils import parse_timedelta
from distributed import Scheduler
from distributed.node import ServerNode

from entrypoint.dask_config import AUTOSCALE

if TYPE_CHECKING:  # imported by the one scheduler that autoscales, not by every process
    from entrypoint.autoscaling.compute import Settings
    from entrypoint.autoscaling.policy import Damping

logger = logging.getLogger("distributed.preloading.autoscale")
# the damping keys of our config section, and the Damping field each sets (a duration)
DAMPING_KEYS = {
    "interval": "interval",
    "window": "window",
    "after-growth": "after_growth",
    "retire-budget": "retire_budget",
}
LOOPS: weakref.WeakKeyDictionary[Scheduler, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def settings() -> Settings | None:
    """The autoscaler's settings from dask's config; None when the scheduler sizes no group."""

    def get(key: str) -> Any:  # each key by dask's lookup: `-` and `_` are one (env variables)
        return dask.config.get(f"{AUTOSCALE}.{key}", None)

    if not get("group"):
        return None
    from entrypoint.autoscaling.compute import GroupPath, Settings
    from entrypoint.autoscaling.policy import Limits

    limits = Limits(int(get("minimum")), int(get("maximum")), int(get("workers-per-vm")))
    return Settings(
        GroupPath.parse(str(get("group"))), limits, str(get("metadata-host")),
        str(get("compute-api")),
    )  # fmt: skip


def damping() -> Damping:
    """DAMPING, with the durations dask's config gives (e.g. DASK_DASK_TLS__AUTOSCALE__WINDOW)."""
    from entrypoint.autoscaling.policy import DAMPING, Damping

    given = {
        field: parse_timedelta(dask.config.get(f"{AUTOSCALE}.{key}"), default="seconds")
        for key, field in DAMPING_KEYS.items()
        if dask.config.get(f"{AUTOSCALE}.{key}", None) is not None
    }
    return Damping(**{**DAMPING.__dict__, **given})


def setup(server: ServerNode) -> None:
    if not isinstance(server, Scheduler) or (given := settings()) is None:
        return
    from entrypoint.autoscaling.compute import ComputeApi
    from entrypoint.autoscaling.policy import Policy
    from entrypoint.autoscaling.scaler import Autoscaler

    holding = damping()
    scaler = Autoscaler(server, ComputeApi(given), Policy(given.limits, holding))
    logger.info("autoscale: %s, %d to %d VMs of %d workers; %s", given.group,
                given.limits.minimum, given.limits.maximum, given.limits.workers_per_vm,
                holding)  # fmt: skip
    LOOPS[server] = asyncio.ensure_future(scaler.run())


def teardown(server: ServerNode) -> None:
    if isinstance(server, Scheduler) and (loop := LOOPS.pop(server, None)):
        loop.cancel()

"""The autoscaler's loop, inside the scheduler: every `interval` it reads the scheduler's demand
(`adaptive_target()`, as distributed.deploy.Adaptive does), turns it into worker VMs and asks the
policy. A growth is the group's resize, upward only. A shrink picks the VMs cheapest to lose by
`workers_to_close()` (its workers grouped by the instance they run on), retires their workers
through the scheduler (the drain of drain_on_stop: every result they alone hold moves to workers
on other VMs; the scheduler closes none of them, so no nanny starts a new one), then deletes
exactly those instances (deleteInstances, which lowers the target size as well). A VM whose
results could not all be moved is not deleted: it is looked at again each round, deleted once
its workers hold nothing of their own, let go if the scheduler gave its retirement up.

Each worker is named after its VM (the workers of a worker-only container take its hostname,
the instance's name: NAME, or NAME-0, NAME-1, ... with several; cluster.Plan.worker_name), so the
VM of each worker is known exactly, never guessed from an address."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from distributed import Scheduler
from distributed.core import Status

from entrypoint.autoscaling.compute import ApiError, Group
from entrypoint.autoscaling.policy import Grow, Hold, Policy, Shrink
from entrypoint.preload.drain_on_stop import drain, unique_results

logger = logging.getLogger("distributed.preloading.autoscale")


class GroupApi(Protocol):
    async def group(self) -> Group: ...
    async def resize(self, size: int) -> None: ...
    async def delete_instances(self, names: list[str]) -> None: ...


def instance_of(worker_name: object, instances: Collection[str]) -> str | None:
    """The instance a worker named `worker_name` runs on: the name itself, or the name before its
    "-N" (several workers) or its domain (a VM whose hostname is its full DNS name); None for a
    worker on none of `instances`."""
    host = str(worker_name).split(".", 1)[0]
    if host in instances:
        return host
    base, _, index = host.rpartition("-")
    return base if index.isdigit() and base in instances else None


class SchedulerDrain:
    """The scheduler itself, as drain_on_stop's drain asks it (its Scheduler protocol). The
    retirement is shielded: when the drain's budget runs out, the scheduler goes on moving the
    results, as it does for a nanny whose rpc gave up."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def retire_workers(self, **kwargs: Any) -> dict[str, Any]:
        retired: dict[str, Any] = await asyncio.shield(self.scheduler.retire_workers(**kwargs))
        return retired

    async def has_what(self, *, workers: list[str]) -> dict[str, Collection[Any]]:
        return dict(self.scheduler.get_has_what(workers=workers))

    async def who_has(self, *, keys: list[Any]) -> dict[Any, Collection[str]]:
        return dict(self.scheduler.get_who_has(keys=keys))


@dataclass
class Autoscaler:
    scheduler: Scheduler
    api: GroupApi
    policy: Policy
    clock: Callable[[], float] = time.monotonic
    retiring: dict[str, list[str]] = field(default_factory=dict)  # VM: its workers' addresses
    deleted: set[str] = field(default_factory=set)  # VMs deleteInstances took, still listed

    async def run(self) -> None:
        """Rounds until cancelled; no failure of a round ends it (nor the scheduler)."""
        while True:
            try:
                await self.round()
            except ApiError as error:
                logger.warning("autoscale: %s", error)
            except Exception:  # a bug of ours must not take the scheduler down
                logger.exception("autoscale: the round failed")
            await asyncio.sleep(self.policy.damping.interval)

    async def round(self) -> None:
        group = await self.api.group()
        listed = {instance.name for instance in group.instances}
        self.deleted &= listed
        await self._finish_retirements(group)
        target = max(group.target_size, 0)  # deleteInstances took the deleted VMs out of it
        workers = self.scheduler.adaptive_target()
        busy = bool(self.retiring or self.deleted)
        decision = self.policy.decide(self.clock(), workers, target, len(self.retiring), busy)
        if isinstance(decision, Grow):
            logger.info("autoscale: %d workers wanted: growing the group from %d to %d VMs",
                        workers, target, decision.size)  # fmt: skip
            await self.api.resize(decision.size)
        elif isinstance(decision, Shrink):
            await self._shrink(group, decision.vms)
        elif isinstance(decision, Hold):
            logger.debug("autoscale: holding at %d VMs: %s", target, decision.why)

    async def _shrink(self, group: Group, count: int) -> None:
        chosen = self._cheapest(group, count)
        if not chosen:
            return
        addresses = [a for vm in chosen for a in self._workers_on(vm).values()]
        for vm in chosen:
            self.retiring[vm] = list(self._workers_on(vm).values())
        budget = self.policy.damping.retire_budget
        drained = await drain(SchedulerDrain(self.scheduler), addresses, budget)
        logger.info("autoscale: retiring %s: %s", ", ".join(chosen), drained)
        if drained.left == 0:
            await self._delete(chosen)

    def _cheapest(self, group: Group, count: int) -> list[str]:
        """Up to `count` VMs to retire, cheapest first as `workers_to_close` orders them: idle,
        then holding the least. Only VMs that run, whose workers all run idle and none of which
        is being retired already (nor held by upstream: long-running tasks)."""
        running = {i.name for i in group.instances if i.action == "NONE"}
        candidates = running - set(self.retiring) - self.deleted
        by_vm = {vm: self._workers_on(vm) for vm in candidates}

        def key(ws: Any) -> str:
            return instance_of(ws.name, candidates) or ws.address  # any other: a group of its own

        order = self.scheduler.workers_to_close(n=len(self.scheduler.workers), key=key)
        chosen: list[str] = []
        for address in order:
            vm = instance_of(self.scheduler.workers[address].name, candidates)
            if vm and vm not in chosen and self._idle(by_vm[vm]):
                chosen.append(vm)
        return chosen[:count]

    def _idle(self, workers: dict[str, str]) -> bool:
        states = [self.scheduler.workers.get(address) for address in workers.values()]
        return bool(states) and all(
            ws is not None and ws.status == Status.running and not ws.processing for ws in states
        )

    def _workers_on(self, vm: str) -> dict[str, str]:
        """{worker name: address} of the workers on `vm`."""
        return {
            str(ws.name): address
            for address, ws in self.scheduler.workers.items()
            if instance_of(ws.name, (vm,)) == vm
        }

    async def _finish_retirements(self, group: Group) -> None:
        """VMs retired in an earlier round: delete those whose workers now hold nothing of
        their own; let go of those the scheduler took back (a worker running again)."""
        for vm, addresses in list(self.retiring.items()):
            instance = group.named(vm)
            if instance is None or instance.action == "DELETING":
                del self.retiring[vm]
                continue
            states = [self.scheduler.workers.get(a) for a in addresses]
            if any(ws is not None and ws.status == Status.running for ws in states):
                logger.warning("autoscale: %s: the scheduler gave its retirement up; kept", vm)
                del self.retiring[vm]
                continue
            present = [a for a in addresses if a in self.scheduler.workers]
            if not present or await unique_results(SchedulerDrain(self.scheduler), present) == 0:
                await self._delete([vm])

    async def _delete(self, vms: list[str]) -> None:
        await self.api.delete_instances(vms)
        logger.info("autoscale: deleted %s from the group", ", ".join(vms))
        for vm in vms:
            self.retiring.pop(vm, None)
            self.deleted.add(vm)

"""A stop signal to `dask worker` first moves its workers' results to other workers, within a
budget (DRAIN_TIMEOUT), then closes as upstream does; one line says what could not be moved.

Upstream: `distributed/cli/dask_worker.py` (`wait_for_signals_and_close`) answers SIGTERM and
SIGINT with `Nanny.close(timeout=10, reason=f"signal-{signum}")` on every nanny, and
`distributed/nanny.py` then kills its worker process: the results it held are lost, and computed
again elsewhere when needed. Only `Scheduler.retire_workers` moves a worker's results first, and it
has no time limit of its own (dask/distributed#6416).

Ours wrap `Nanny.close`: on a stop signal's close, the first nanny asks the scheduler to retire
every worker of this process in one call, `retire_workers(workers=..., close_workers=False,
remove=False)`: they take no new task, and their results are copied to workers elsewhere (never to
each other, all being retired at once). The scheduler closes none of them, so `retire_keeps_nanny`
never starts a fresh one. The other nannies' closes wait for that same drain; after it, or after
the budget, each nanny closes as upstream. Tasks still running on a drained worker run again
elsewhere, as upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import dask.config
from dask.utils import parse_timedelta
from distributed import Nanny
from distributed.core import Status
from distributed.node import ServerNode

from entrypoint.dask_config import DRAIN_TIMEOUT

STOP_SIGNAL = "signal-"  # the start of the reason dask_worker.py closes its nannies with
COUNT_TIMEOUT = 1.0  # seconds the scheduler has to count results, before the drain and after

logger = logging.getLogger("distributed.preloading")
T = TypeVar("T")
_upstream: Callable[..., Awaitable[Any]] = Nanny.close


class Scheduler(Protocol):
    """What the drain asks of the scheduler: a nanny's rpc to it (or, for a scheduler-side caller,
    an adapter to `Scheduler.retire_workers`, `get_has_what` and `get_who_has`)."""

    def retire_workers(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def has_what(self, *, workers: list[str]) -> Awaitable[dict[str, Collection[Any]]]: ...
    def who_has(self, *, keys: list[Any]) -> Awaitable[dict[Any, Collection[str]]]: ...


@dataclass(frozen=True)
class Drained:
    workers: int
    held: int | None  # results these workers alone held when the drain began (None: unknown)
    left: int | None  # results still held by these workers alone when it ended (None: unknown)
    seconds: float
    why: str = ""  # why results were left: the budget ran out, no other worker could take them...

    def __str__(self) -> str:
        held = "?" if self.held is None else self.held
        if self.left == 0:
            return f"drained {self.workers} workers in {self.seconds:.1f} s: {held} results moved"
        left = "how many results could not be moved is unknown" if self.left is None else (
            f"{self.left} of {held} results could not be moved"
        )  # fmt: skip
        return f"drain of {self.workers} workers, {self.seconds:.1f} s: {left} ({self.why})"


async def drain(scheduler: Scheduler, workers: list[str], budget: float) -> Drained:
    """Retire `workers` through `scheduler` within `budget` seconds (and COUNT_TIMEOUT more to
    count what is left), without closing them. A scheduler that does not answer within
    COUNT_TIMEOUT (gone, say) ends the drain at once. Never raises for what the scheduler answers
    or fails to answer: the stop goes on whatever happens here."""
    started = time.monotonic()
    try:
        held = await _within(min(budget, COUNT_TIMEOUT), unique_results(scheduler, workers))
    except Exception as error:  # any failure to ask (TimeoutError included): no drain
        return Drained(len(workers), None, None, time.monotonic() - started, _failed(error))
    why = ""
    try:
        retired = await _within(
            budget - (time.monotonic() - started),
            scheduler.retire_workers(
                workers=workers, close_workers=False, remove=False,
                stimulus_id=f"dask-tls-drain-{time.time()}",
            ),
        )  # fmt: skip
        if len(retired) < len(workers):
            why = "no other worker could take them"
    except TimeoutError:
        why = f"the drain budget of {budget:g} s ran out"
    except Exception as error:  # whatever the scheduler does, the stop goes on
        why = _failed(error)
    left: int | None = None
    try:
        left = await _within(COUNT_TIMEOUT, unique_results(scheduler, workers))
    except Exception as error:  # as above
        why = why or _failed(error)
    return Drained(len(workers), held, left, time.monotonic() - started, why)


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(max(seconds, 0)):
        return await awaitable


def _failed(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return f"the scheduler did not answer within {COUNT_TIMEOUT:g} s"
    return f"the scheduler failed: {error!r}"[:200]


async def unique_results(scheduler: Scheduler, workers: list[str]) -> int:
    """How many results in memory are held by `workers` and by no other worker."""
    has_what = await scheduler.has_what(workers=workers)
    keys = list({key for keys in has_what.values() for key in keys})
    if not keys:
        return 0
    who_has = await scheduler.who_has(keys=keys)
    ours = set(workers)
    return sum(1 for holders in who_has.values() if holders and set(holders) <= ours)


class NannyDrain:
    """The nannies of this process, and the one drain a stop signal starts for them."""

    def __init__(self) -> None:
        self.nannies: weakref.WeakSet[Nanny] = weakref.WeakSet()
        self.drains: weakref.WeakKeyDictionary[Nanny, asyncio.Future[None]] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, nanny: Nanny) -> None:
        self.nannies.add(nanny)

    async def before_close(self, nanny: Nanny) -> None:
        """Wait for the drain of `nanny`'s worker, starting it for every nanny of this process
        whose worker runs, if none has started yet."""
        budget = parse_timedelta(dask.config.get(DRAIN_TIMEOUT, 0), default="seconds") or 0
        if nanny not in self.drains and budget > 0:
            group = [n for n in self.nannies if self.drainable(n, nanny.scheduler_addr)]
            if nanny in group:
                task = asyncio.ensure_future(self.run(group, budget))
                for member in group:
                    self.drains[member] = task
        if waiting := self.drains.get(nanny):
            await waiting

    def drainable(self, nanny: Nanny, scheduler: str) -> bool:
        return (
            nanny not in self.drains
            and nanny.status == Status.running
            and bool(nanny.worker_address)
            and nanny.scheduler_addr == scheduler
        )

    async def run(self, nannies: list[Nanny], budget: float) -> None:
        workers = sorted(n.worker_address for n in nannies)
        logger.info("Stop signal: draining %d workers, for up to %g s", len(workers), budget)
        drained = await drain(nannies[0].scheduler, workers, budget)
        logger.log(logging.INFO if drained.left == 0 else logging.WARNING, "%s", drained)


NANNIES = NannyDrain()  # one per process: one `dask worker`, its nannies, one stop signal


async def close(self: Nanny, timeout: float = 5, reason: str = "nanny-close") -> Any:
    if reason.startswith(STOP_SIGNAL):
        await NANNIES.before_close(self)
    return await _upstream(self, timeout=timeout, reason=reason)


def install() -> None:
    Nanny.close = close  # type: ignore[method-assign]


def setup(server: ServerNode) -> None:
    if isinstance(server, Nanny):
        NANNIES.add(server)

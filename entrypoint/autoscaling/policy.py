"""What the autoscaler does with the scheduler's demand: pure decisions, time given by the caller.

Grow at once, upward only and never past the maximum; shrink slowly: only to the highest demand
seen over a window, at most a quarter of the group per step, never right after a growth, never
below the minimum. The numbers are DAMPING's (README, "Autoscaling")."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Damping:
    """How the autoscaler holds itself back; every number of its behaviour is here."""

    interval: float = 5.0  # seconds between two looks at the demand
    window: float = 60.0  # a shrink goes only down to the highest demand of this many seconds
    after_growth: float = 120.0  # seconds after a growth during which nothing shrinks
    step: float = 0.25  # the share of the group one shrink may remove (at least one VM)
    retire_budget: float = 60.0  # seconds one shrink may spend moving results off its VMs


DAMPING = Damping()


@dataclass(frozen=True)
class Limits:
    minimum: int  # worker VMs
    maximum: int
    workers_per_vm: int

    def vms_for(self, workers: int) -> int:
        """The VMs that hold `workers` workers, within the limits."""
        wanted = math.ceil(max(workers, 0) / self.workers_per_vm)
        return min(max(wanted, self.minimum), self.maximum)


@dataclass(frozen=True)
class Grow:
    size: int  # the group's new target size, above its current one


@dataclass(frozen=True)
class Shrink:
    vms: int  # how many VMs to retire and delete


@dataclass(frozen=True)
class Hold:
    why: str


Decision = Grow | Shrink | Hold


@dataclass
class Policy:
    limits: Limits
    damping: Damping = DAMPING
    started: float | None = None  # when the first demand was seen
    last_growth: float = -math.inf
    demand: deque[tuple[float, int]] = field(default_factory=deque)  # (time, VMs wanted)

    def decide(
        self, now: float, workers: int, target_size: int, retiring: int, busy: bool
    ) -> Decision:
        """What to do at `now`, when the scheduler wants `workers` workers, the group's target
        size is `target_size`, `retiring` of the VMs it counts are being retired (to be deleted),
        and `busy` says a shrink is under way (no other starts before it is done)."""
        wanted = self.limits.vms_for(workers)
        self._remember(now, wanted)
        serving = target_size - retiring
        if wanted > serving:
            size = min(self.limits.maximum, wanted + retiring)
            if size > target_size:
                self.last_growth = now
                return Grow(size)
            return Hold(f"at the maximum of {self.limits.maximum} VMs")
        floor = max(self.highest(), self.limits.minimum)
        if floor >= serving:
            return Hold("no VM to spare")
        if busy:
            return Hold("a shrink is under way")
        if now - self.last_growth < self.damping.after_growth:
            return Hold("grew less than after-growth ago")
        if self.started is None or now - self.started < self.damping.window:
            return Hold("the demand has been seen for less than a window")
        step = max(1, math.floor(serving * self.damping.step))
        return Shrink(min(serving - floor, step))

    def highest(self) -> int:
        """The most VMs wanted over the window."""
        return max(wanted for _, wanted in self.demand)

    def _remember(self, now: float, wanted: int) -> None:
        if self.started is None:
            self.started = now
        self.demand.append((now, wanted))
        while self.demand[0][0] < now - self.damping.window:
            self.demand.popleft()

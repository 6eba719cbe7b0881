"""The supervisor's loop: starts the scheduler and the workers, reaps every child, starts the
workers again, and ends in one `Stop` (why, the exit code, whether a second signal hurried it).

What each exit means, while running:
- the scheduler exits 0: it was shut down on request (`client.shutdown()`); stop, exit 0;
- the scheduler fails: the cluster is gone; stop, exit 1, so a restart policy acts;
- `dask worker` exits 0: the scheduler closed its workers; start them again after a second;
- `dask worker` fails: start it again with RESTARTS' backoff; quick failures in a row past its
  limit stop the container (exit 1) rather than loop;
- with a remote scheduler (DASK_ROLE=worker) the workers' exits never stop us: they start again once
  the scheduler answers, looked for with WAITS' backoff, forever; failures in a row (whether or not
  the scheduler answers) wait longer each time, with the same backoff, so that a `dask worker` that
  fails at once never becomes a loop of instant restarts.
A worker process that dies inside `dask worker` is its nanny's business, not ours.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from entrypoint.children import Child, describe_exit
from entrypoint.errors import EXIT_FAILURE, EXIT_OK
from entrypoint.signals import HANDLED, STOP_SIGNALS

TICK = 0.5  # the loop wakes at least this often, even if a SIGCHLD was lost
KILL_WAIT = 1.0  # for a SIGKILLed group to be reaped
AFTER_CLOSE = 1.0  # before starting workers that the scheduler closed
STABLE_AFTER = 60.0  # a `dask worker` that ran this long starts the count of failures afresh
DAY = 86400.0
# The shutdown, in this order: each child gets SIGTERM and this long (inside Docker's 10 s) before
# its whole process group gets SIGKILL. With the scheduler gone, workers only hang trying to say
# goodbye to it, so they get ORPHANED_GRACE.
SHUTDOWN = (("workers", 5.0), ("scheduler", 2.0))
ORPHANED_GRACE = 1.0
# Workers that drain on a stop (DASK_ROLE=worker, the preload's drain_on_stop) get their drain
# budget and this much more: a second to count what is left, two to close.
AFTER_DRAIN = 3.0


def draining_grace(drain: float) -> float:
    """The workers' grace on a stop when they drain for up to `drain` seconds."""
    return max(dict(SHUTDOWN)["workers"], drain + AFTER_DRAIN)


def longest_stop(drain: float) -> float:
    """The longest a worker-only container's stop takes with this drain budget: the workers'
    grace, then the wait for their SIGKILLed group. `docker stop -t` should give it."""
    return draining_grace(drain) + KILL_WAIT


log = logging.getLogger("entrypoint")
WaitPid = Callable[[int, int], tuple[int, int]]
Clock = Callable[[], float]
Wait = Callable[[float], int | None]  # block up to a timeout for a signal; None if none came
Probe = Callable[[], str | None]  # None when the scheduler is reachable, else why not


class Certificate(Protocol):
    def reload(self) -> None: ...
    def report(self) -> None: ...


@dataclass(frozen=True)
class Stop:
    reason: str
    exit_code: int
    orphaned: bool = False  # the scheduler is gone
    hurried: bool = False  # a second stop signal: no more grace

    def __str__(self) -> str:
        hurried = " (hurried by a second signal)" if self.hurried else ""
        return f"stopped: {self.reason}, exit code {self.exit_code}{hurried}"


class Backoff:
    """Delays that double from `first` up to `cap`; with `attempts`, None once that many were
    given in a row (time to give up)."""

    def __init__(self, first: float, cap: float, attempts: int | None = None) -> None:
        self.first, self.cap, self.attempts = first, cap, attempts
        self.given = 0

    def next(self) -> float | None:
        if self.attempts is not None and self.given >= self.attempts:
            return None
        delay: float = min(self.cap, self.first * 2.0**self.given)
        self.given += 1
        return delay

    def reset(self) -> None:
        self.given = 0


class Supervisor:
    """Runs a scheduler and/or workers (either may be absent: DASK_ROLE). With `probe`, the workers
    start only once it finds the scheduler reachable, and their exits never stop us. With `drain`,
    the workers' stop may take that many seconds more (they move their results away first)."""

    def __init__(
        self, scheduler: Child | None, workers: Child | None, *, probe: Probe | None = None,
        certificate: Certificate | None = None, waitpid: WaitPid = os.waitpid,
        clock: Clock = time.monotonic, wait: Wait | None = None, drain: float = 0.0,
    ) -> None:  # fmt: skip
        self.children = {c.role: c for c in (scheduler, workers) if c is not None}
        self.drain = drain  # seconds the workers may spend moving their results away on a stop
        self.workers, self.probe, self.certificate = workers, probe, certificate
        self.stop: Stop | None = None
        self.workers_due: float | None = None  # when to start the workers next
        self.restarts = Backoff(1.0, 16.0, attempts=5)
        self.waits = Backoff(1.0, 30.0)
        self.failures = Backoff(1.0, 30.0)  # DASK_ROLE=worker: failed `dask worker`s in a row
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._waitpid, self._clock, self._wait = waitpid, clock, wait or self._next_signal
        self.next_report = clock() + DAY

    def install_signal_handlers(self) -> None:
        for signum in HANDLED:
            signal.signal(signum, self._record)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signals.put(signum)  # nothing else here: the loop logs and acts

    def _next_signal(self, timeout: float) -> int | None:
        try:
            return self.signals.get(timeout=timeout) if timeout > 0 else self.signals.get_nowait()
        except queue.Empty:
            return None

    def run(self) -> Stop:
        """Start the children, supervise until a Stop, then stop them all."""
        self.turn(timeout=0)  # a signal that arrived during start-up: stop before starting
        if self.stop is None:
            if scheduler := self.children.get("scheduler"):
                scheduler.start(self._clock())
            self.workers_due = self._clock() if self.workers else None
        while self.stop is None:
            self.start_due()
            self.turn(timeout=TICK)
        self.shut_down(self.stop)
        return self.stop

    def turn(self, timeout: float) -> None:
        """Wait up to `timeout` for a signal, act on it, reap; report the expiry once a day."""
        signum = self._wait(timeout)
        if signum is not None:
            getattr(self, f"handle_{HANDLED[signal.Signals(signum)]}")()
        self.reap()
        if self.certificate and self._clock() >= self.next_report:
            self.next_report += DAY
            self.certificate.report()

    def handle_term(self) -> None:
        self.stop_for(Stop("SIGTERM received", EXIT_OK))

    def handle_int(self) -> None:
        self.stop_for(Stop("SIGINT received", EXIT_OK))

    def handle_chld(self) -> None:
        pass  # every turn reaps

    def handle_hup(self) -> None:
        if self.certificate and self.stop is None:
            self.certificate.reload()

    def stop_for(self, stop: Stop) -> None:
        if self.stop is None:
            log.log(logging.INFO if stop.exit_code == EXIT_OK else logging.ERROR,
                    "stopping: %s", stop.reason)  # fmt: skip
            self.stop, self.workers_due = stop, None

    def reap(self) -> None:
        for pid, status in self._reaped():
            child = next((c for c in self.children.values() if c.pid == pid), None)
            if child is None:
                log.debug("reaped orphan %d", pid)  # e.g. a worker process of a killed nanny
                continue
            child.pid = None
            self.on_exit(child, pid, os.waitstatus_to_exitcode(status))

    def _reaped(self) -> Iterator[tuple[int, int]]:
        while True:
            try:
                pid, status = self._waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            yield pid, status

    def on_exit(self, child: Child, pid: int, code: int) -> None:
        how = describe_exit(code)
        if self.stop is not None:
            log.info("%s[%d] %s", child.role, pid, how)
        elif child.role == "scheduler":
            log.log(logging.INFO if code == 0 else logging.ERROR, "scheduler[%d] %s", pid, how)
            if code == 0:
                self.stop_for(
                    Stop("the scheduler was shut down (client.shutdown())", EXIT_OK, True)
                )
            else:
                self.stop_for(Stop(f"the scheduler {how}: the cluster is gone", EXIT_FAILURE, True))
        elif self.probe:
            self.remote_worker_exited(child, pid, code, how)
        elif code == 0:
            log.warning("workers[%d] %s: the scheduler closed them; starting them again", pid, how)
            self.workers_due = self._clock() + AFTER_CLOSE
        else:
            self.restart_failed(child, pid, how)

    def restart_failed(self, child: Child, pid: int, how: str) -> None:
        now = self._clock()
        if now - child.started_at >= STABLE_AFTER:
            self.restarts.reset()
        delay = self.restarts.next()
        if delay is None:
            failures = self.restarts.given + 1
            self.stop_for(Stop(f"the workers failed {failures} times in a row", EXIT_FAILURE))
            return
        log.error("workers[%d] %s: starting them again in %.0f s", pid, how, delay)
        self.workers_due = now + delay

    def remote_worker_exited(self, child: Child, pid: int, code: int, how: str) -> None:
        """DASK_ROLE=worker: start them again, never give up; after a failure, only once the
        backoff has passed (reset by a run of STABLE_AFTER)."""
        now = self._clock()
        if code == 0 or now - child.started_at >= STABLE_AFTER:
            self.failures.reset()
        delay = 0.0 if code == 0 else (self.failures.next() or 0.0)
        log.warning("workers[%d] %s: starting them again in %.0f s, once the scheduler answers",
                    pid, how, delay)  # fmt: skip
        self.workers_due = now + delay

    def start_due(self) -> None:
        """Start the workers if their time has come (and, with a probe, the scheduler answers)."""
        if self.workers is None or self.workers_due is None or self._clock() < self.workers_due:
            return
        problem = self.probe() if self.probe else None
        if problem:
            delay = self.waits.next() or 0.0
            log.warning("waiting for the scheduler: %s; next look in %.0f s", problem, delay)
            self.workers_due = self._clock() + delay
            return
        self.waits.reset()
        self.workers_due = None
        self.workers.start(self._clock())

    def shut_down(self, stop: Stop) -> None:
        """When this returns, every child has been reaped: SHUTDOWN's order and grace, then
        SIGKILL for each child's whole process group."""
        for role, grace in SHUTDOWN:
            child = self.children.get(role)
            if child is None:
                continue
            if child.running:
                child.signal(signal.SIGTERM)
                if not self.wait_for(child, self.grace(role, grace, stop), hurry=True):
                    log.warning("%s[%d] still running: SIGKILL", child.role, child.pid)
            child.kill_group()  # also whatever it left behind in its group
            self.wait_for(child, KILL_WAIT, hurry=False)  # a SIGKILLed child is always reaped
        self.reap()

    def grace(self, role: str, grace: float, stop: Stop) -> float:
        """SHUTDOWN's grace for `role`; workers get less when the scheduler is gone, and their
        drain budget more when they drain."""
        if role != "workers":
            return grace
        if stop.orphaned:
            return ORPHANED_GRACE
        return draining_grace(self.drain) if self.drain else grace

    def wait_for(self, child: Child, seconds: float, *, hurry: bool) -> bool:
        """Reap until `child` has exited or `seconds` pass; with `hurry`, a second stop signal (or
        an earlier one) ends the wait at once."""
        deadline = self._clock() + seconds
        while child.running and (now := self._clock()) < deadline:
            if hurry and self.stop and self.stop.hurried:
                break
            if self._wait(min(TICK, deadline - now)) in STOP_SIGNALS and self.stop:
                if not self.stop.hurried:
                    log.warning("second stop signal: not waiting any longer")
                self.stop = dataclasses.replace(self.stop, hurried=True)
            self.reap()
        return not child.running

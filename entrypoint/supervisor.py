"""PID 1 of the container: starts the scheduler and the workers, reaps every child, restarts the
workers, and stops everything on SIGTERM/SIGINT.

What deaths mean: the scheduler is the cluster, so if it dies the container exits non-zero (a
restart policy then acts); if it exits 0 it was shut down on request (`client.shutdown()`), and so
does the container. A worker process that dies is replaced by its nanny (distributed); if the whole
`dask worker` process exits 0, the scheduler closed its workers and they start again; if it fails
it is restarted here with backoff, and after RESTART_DELAYS are spent on quick failures in a row
the container exits non-zero rather than loop. A worker-only
container (DASK_ROLE=worker) instead waits for its remote scheduler, with backoff and forever:
its workers exit when that scheduler goes away, and come back when it answers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from entrypoint import rotation
from entrypoint.cluster import (
    LOG_FORMAT,
    Plan,
    child_environment,
    scheduler_command,
    workers_command,
)
from entrypoint.errors import EXIT_FAILURE, EXIT_OK
from entrypoint.private_files import remove_private_files

SIGNALS = {
    signal.SIGTERM: "term",
    signal.SIGINT: "int",
    signal.SIGCHLD: "chld",
    signal.SIGHUP: "hup",
}
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# blocked from the entrypoint's first line until our handlers are in place: SIGHUP's default
# action would end PID 1
HANDLED_LATER = {*STOP_SIGNALS, signal.SIGHUP}
TICK = 0.5  # the loop wakes at least this often, even if a SIGCHLD was lost
WORKERS_GRACE = 5.0  # inside Docker's 10 s: nannies close their workers, then we SIGKILL
# with the scheduler gone, workers only hang trying to say goodbye to it
ORPHANED_WORKERS_GRACE = 1.0
SCHEDULER_GRACE = 2.0
KILL_WAIT = 1.0
RESTART_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)
WAIT_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # between looks for a remote scheduler; then 30 s
CLOSED_RESTART_DELAY = 1.0  # after `dask worker` exits 0: the scheduler closed its workers
STABLE_AFTER = 60.0  # a worker process that ran this long resets the count of quick failures

log = logging.getLogger("entrypoint")
Spawn = Callable[[list[str], dict[str, str]], int]
Kill = Callable[[int, int], None]
WaitPid = Callable[[int, int], tuple[int, int]]
Clock = Callable[[], float]
Probe = Callable[[], str | None]  # None when the scheduler is reachable, else why not
DAY = 86400.0


def spawn(argv: list[str], env: dict[str, str]) -> int:
    """Start `argv` in a process group of its own with signals unblocked (we block some across
    exec, see __main__), so a terminal's Ctrl-C reaches only us and we decide the order."""
    return os.posix_spawn(argv[0], argv, env, setpgroup=0, setsigmask=())


class Child:
    """One process we started; `pid` is None once it has been reaped."""

    def __init__(
        self, role: str, argv: list[str], env: dict[str, str], *, spawn: Spawn = spawn,
        kill: Kill = os.kill,
    ) -> None:  # fmt: skip
        self.role, self.argv, self.env = role, argv, env
        self.pid: int | None = None
        self.group: int | None = None
        self.started_at = 0.0
        self._spawn, self._kill = spawn, kill

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, now: float) -> None:
        self.pid = self.group = self._spawn(self.argv, self.env)
        self.started_at = now
        log.info("%s[%d] started", self.role, self.pid)

    def signal(self, signum: int) -> None:
        if self.pid is not None:
            self._send(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL every process left in the child's group, its own children included."""
        if self.group is not None:
            self._send(-self.group, signal.SIGKILL)

    def reaped(self) -> None:
        self.pid = None

    def _send(self, target: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._kill(target, signum)


class Supervisor:
    """Runs the scheduler and/or the workers; either may be absent (DASK_ROLE). With `probe`, the
    workers start only once it finds the scheduler reachable, and their exits never end us."""

    def __init__(
        self, scheduler: Child | None, workers: Child | None, *, probe: Probe | None = None,
        waitpid: WaitPid = os.waitpid, clock: Clock = time.monotonic,
    ) -> None:  # fmt: skip
        self.scheduler, self.workers, self.probe = scheduler, workers, probe
        self.certificate: rotation.ServedCertificate | None = None  # reload on SIGHUP, daily line
        self.next_daily = clock() + DAY
        self.children = [child for child in (workers, scheduler) if child is not None]
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.exit_code: int | None = None
        self.start_workers_at: float | None = None
        self.quick_failures = 0
        self.waits = 0
        self.hurry = False
        self.workers_grace = WORKERS_GRACE
        self._waitpid, self._clock = waitpid, clock

    def install_signal_handlers(self) -> None:
        for signum in SIGNALS:
            signal.signal(signum, self._record)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_LATER)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signals.put(signum)  # nothing else here: the loop logs and acts

    def run(self) -> int:
        """Start the children, supervise until told to stop or the scheduler dies, then stop."""
        self.step(timeout=0)  # a signal that arrived during start-up: stop before starting
        if self.exit_code is None:
            if self.scheduler:
                self.scheduler.start(self._clock())
            if self.workers:
                self.start_workers_at = self._clock()
                self.start_due()
        while self.exit_code is None:
            self.step(timeout=TICK)
        self.stop()
        return self.exit_code

    def step(self, timeout: float) -> None:
        """One turn: act on at most one signal, reap, start the workers if that is due."""
        try:
            signum: int | None = self.signals.get(block=timeout > 0, timeout=timeout or None)
        except queue.Empty:
            signum = None
        if signum is not None:
            getattr(self, f"handle_{SIGNALS[signal.Signals(signum)]}")()
        self.reap()
        self.start_due()
        if self.certificate and self._clock() >= self.next_daily:
            self.next_daily += DAY
            self.certificate.report()

    def handle_term(self) -> None:
        self._begin_stop("SIGTERM")

    def handle_int(self) -> None:
        self._begin_stop("SIGINT")

    def handle_chld(self) -> None:
        pass  # every turn reaps

    def handle_hup(self) -> None:
        if self.certificate and self.exit_code is None:
            self.certificate.reload()

    def _begin_stop(self, name: str) -> None:
        if self.exit_code is None:
            log.info("%s received: stopping the workers, then the scheduler", name)
            self.exit_code = EXIT_OK

    def reap(self) -> None:
        for pid, status in self._reaped():
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                log.debug("reaped orphan %d", pid)  # e.g. a worker process of a killed nanny
                continue
            child.reaped()
            self._on_exit(child, pid, os.waitstatus_to_exitcode(status))

    def _reaped(self) -> Iterator[tuple[int, int]]:
        while True:
            try:
                pid, status = self._waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            yield pid, status

    def _on_exit(self, child: Child, pid: int, code: int) -> None:
        how = describe_exit(code)
        if self.exit_code is not None:
            log.info("%s[%d] %s", child.role, pid, how)
        elif child is self.scheduler:
            self._on_scheduler_exit(pid, code, how)
        elif self.probe:
            log.warning(
                "%s[%d] %s: starting them again once the scheduler answers", child.role, pid, how
            )
            self.start_workers_at = self._clock()
        elif code == 0:
            # every nanny closed on the scheduler's word (its shutdown, a lost connection): not a
            # crash, and the container keeps N workers
            log.warning(
                "%s[%d] %s: the scheduler closed them; starting them again in %.0f s",
                child.role, pid, how, CLOSED_RESTART_DELAY,
            )  # fmt: skip
            self.start_workers_at = self._clock() + CLOSED_RESTART_DELAY
        else:
            self._schedule_restart(child, pid, how)

    def _on_scheduler_exit(self, pid: int, code: int, how: str) -> None:
        if code == 0:
            log.info("scheduler[%d] %s: it was shut down (client.shutdown()); stopping", pid, how)
            self.exit_code = EXIT_OK
        else:
            log.error("scheduler[%d] %s: the cluster is gone, stopping the container", pid, how)
            self.exit_code = EXIT_FAILURE
        self.workers_grace = ORPHANED_WORKERS_GRACE

    def _schedule_restart(self, child: Child, pid: int, how: str) -> None:
        now = self._clock()
        if now - child.started_at >= STABLE_AFTER:
            self.quick_failures = 0
        if self.quick_failures >= len(RESTART_DELAYS):
            failures = self.quick_failures + 1
            log.error("%s[%d] %s, %d times in a row: giving up", child.role, pid, how, failures)
            self.exit_code = EXIT_FAILURE
            return
        delay = RESTART_DELAYS[self.quick_failures]
        self.quick_failures += 1
        log.error("%s[%d] %s: restarting in %.0f s", child.role, pid, how, delay)
        self.start_workers_at = now + delay

    def start_due(self) -> None:
        """Start the workers if their time has come (and, with a probe, the scheduler answers)."""
        due = self.start_workers_at is not None and self._clock() >= self.start_workers_at
        if self.exit_code is not None or not due or self.workers is None:
            return
        problem = self.probe() if self.probe else None
        if problem:
            delay = WAIT_DELAYS[min(self.waits, len(WAIT_DELAYS) - 1)]
            self.waits += 1
            log.warning("waiting for the scheduler: %s; next look in %.0f s", problem, delay)
            self.start_workers_at = self._clock() + delay
            return
        self.waits = 0
        self.start_workers_at = None
        self.workers.start(self._clock())

    def stop(self) -> None:
        """When this returns, every child has been reaped: workers first, then the scheduler, each
        SIGTERMed, then SIGKILLed with its whole group once its grace is spent."""
        self.start_workers_at = None
        for child in self.children:
            grace = self.workers_grace if child is self.workers else SCHEDULER_GRACE
            if child.running:
                child.signal(signal.SIGTERM)
                if not self._wait_for(child, 0 if self.hurry else grace):
                    log.warning("%s[%d] still running: SIGKILL", child.role, child.pid)
            child.kill_group()  # also whatever it left behind in its group
            self._wait_for(child, KILL_WAIT)
        self.reap()

    def _wait_for(self, child: Child, seconds: float) -> bool:
        """Reap until `child` has exited or `seconds` pass; a second stop signal cuts it short."""
        deadline = self._clock() + seconds
        while child.running and self._clock() < deadline and not self.hurry:
            try:
                if self.signals.get(timeout=0.02) in STOP_SIGNALS:
                    log.warning("second stop signal: not waiting any longer")
                    self.hurry = True
            except queue.Empty:
                pass
            self.reap()
        return not child.running


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    name = signal.Signals(-code).name
    hint = " (out of memory, or killed by hand?)" if -code == signal.SIGKILL else ""
    return f"was killed by {name}{hint}"


def reachable(address: str, timeout: float = 2.0) -> Probe:
    """A probe: can a TCP connection to the tls://HOST:PORT `address` be opened?"""
    host, _, port = address.removeprefix("tls://").rpartition(":")

    def probe() -> str | None:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except OSError as error:
            return f"{address}: {error.strerror or error}"
        return None

    return probe


def supervisor_for(plan: Plan, environ: dict[str, str]) -> Supervisor:
    def child(role: str, log_tag: str, command: list[str]) -> Child:
        return Child(role, command, child_environment(environ, plan, log_tag))

    supervisor = Supervisor(
        child("scheduler", "scheduler", scheduler_command(plan)) if plan.runs_scheduler else None,
        child("workers", "worker", workers_command(plan)) if plan.runs_workers else None,
        probe=reachable(plan.scheduler_address) if plan.role == "worker" else None,
    )
    supervisor.certificate = rotation.ServedCertificate(plan)
    return supervisor


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT.format(role="supervisor")
    )
    directory = Path(argv[1])
    try:
        supervisor = supervisor_for(Plan.load(directory), dict(os.environ))
        supervisor.install_signal_handlers()
        code = supervisor.run()
    finally:
        remove_private_files(directory)
    log.info("stopped, exit code %d", code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The supervisor's reaping, restarts and shutdown order, with scripted processes (no real ones)."""

from __future__ import annotations

import os
import signal

import pytest

from entrypoint.errors import EXIT_FAILURE, EXIT_OK
from entrypoint.supervisor import (
    DAY,
    ORPHANED_WORKERS_GRACE,
    RESTART_DELAYS,
    Child,
    Supervisor,
    describe_exit,
)

KILLED = signal.SIGKILL  # a wait status for "killed by SIGKILL" is the signal number itself
EXITED_0 = 0


class Processes:
    """Fake spawn/kill/waitpid: pids count up from 100; exits are scripted, or follow a signal."""

    def __init__(self, exit_on_sigterm: bool = True) -> None:
        self.next_pid = 100
        self.started: list[tuple[int, str]] = []
        self.sent: list[tuple[int, signal.Signals]] = []
        self.exits: list[tuple[int, int]] = []
        self.exit_on_sigterm = exit_on_sigterm

    def spawn(self, argv: list[str], env: dict[str, str]) -> int:
        self.next_pid += 1
        self.started.append((self.next_pid, argv[0]))
        return self.next_pid

    def kill(self, pid: int, signum: int) -> None:
        self.sent.append((pid, signal.Signals(signum)))
        if signum == signal.SIGKILL or self.exit_on_sigterm:
            self.exits.append((abs(pid), signum if signum == signal.SIGKILL else EXITED_0))

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        assert (pid, options) == (-1, os.WNOHANG)
        if not self.exits:
            raise ChildProcessError
        return self.exits.pop(0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.5  # time passes a little at every look, so deadlines are reached
        return self.now


def make(processes: Processes, clock: Clock | None = None) -> Supervisor:
    def child(role: str) -> Child:
        return Child(role, [role], {}, spawn=processes.spawn, kill=processes.kill)

    return Supervisor(
        child("scheduler"), child("workers"), waitpid=processes.waitpid, clock=clock or Clock()
    )


def scheduler_of(supervisor: Supervisor) -> Child:
    assert supervisor.scheduler is not None
    return supervisor.scheduler


def workers_of(supervisor: Supervisor) -> Child:
    assert supervisor.workers is not None
    return supervisor.workers


def started(supervisor: Supervisor) -> Supervisor:
    """Both children started: the scheduler is pid 101, the workers pid 102."""
    supervisor.step(timeout=0)
    scheduler_of(supervisor).start(0)
    workers_of(supervisor).start(0)
    return supervisor


def test_sigterm_stops_workers_then_scheduler_and_exits_0() -> None:
    """SIGTERM: workers get SIGTERM first, the scheduler once they are gone; exit code 0."""
    processes = Processes()
    supervisor = started(make(processes))
    supervisor.signals.put(signal.SIGTERM)
    supervisor.step(timeout=0)
    supervisor.stop()
    terms = [pid for pid, sig in processes.sent if sig == signal.SIGTERM]
    assert terms == [102, 101]
    assert supervisor.exit_code == EXIT_OK
    assert not scheduler_of(supervisor).running and not workers_of(supervisor).running


def test_children_that_ignore_sigterm_are_killed_with_their_group() -> None:
    """Past the grace period the whole process group gets SIGKILL."""
    processes = Processes(exit_on_sigterm=False)
    supervisor = started(make(processes))
    supervisor.signals.put(signal.SIGINT)
    supervisor.step(timeout=0)
    supervisor.stop()
    assert (-102, signal.SIGKILL) in processes.sent and (-101, signal.SIGKILL) in processes.sent
    assert supervisor.exit_code == EXIT_OK


def test_second_signal_cuts_the_grace_short() -> None:
    """A second SIGTERM while waiting: nothing waits any longer, everything gets SIGKILL."""
    processes = Processes(exit_on_sigterm=False)
    clock = Clock()
    supervisor = started(make(processes, clock))
    supervisor.signals.put(signal.SIGTERM)
    supervisor.step(timeout=0)
    supervisor.signals.put(signal.SIGTERM)
    before = clock.now
    supervisor.stop()
    assert supervisor.hurry
    assert clock.now - before < 10  # far less than the 5 s + 2 s of grace, in fake seconds x 0.5
    assert [s for _, s in processes.sent].count(signal.SIGKILL) == 2


def test_scheduler_death_stops_the_container_non_zero() -> None:
    """If the scheduler dies the supervisor stops the workers and exits non-zero."""
    processes = Processes()
    supervisor = started(make(processes))
    processes.exits.append((101, KILLED))
    supervisor.step(timeout=0)
    assert supervisor.exit_code == EXIT_FAILURE
    assert supervisor.workers_grace == ORPHANED_WORKERS_GRACE
    supervisor.stop()
    assert (102, signal.SIGTERM) in processes.sent


def test_dead_workers_process_is_restarted_after_a_delay() -> None:
    """`dask worker` dying is answered by a restart after the first backoff delay, not at once."""
    processes = Processes()
    clock = Clock()
    supervisor = started(make(processes, clock))
    processes.exits.append((102, KILLED))
    supervisor.step(timeout=0)
    assert supervisor.exit_code is None and not workers_of(supervisor).running
    assert (
        supervisor.start_workers_at is not None
        and supervisor.start_workers_at - clock.now <= RESTART_DELAYS[0]
    )
    clock.now += RESTART_DELAYS[0]
    supervisor.step(timeout=0)
    assert workers_of(supervisor).pid == 103


def test_quick_failures_in_a_row_give_up() -> None:
    """A workers process that keeps dying at once ends the container instead of looping."""
    processes = Processes()
    clock = Clock()
    supervisor = started(make(processes, clock))
    for _ in range(len(RESTART_DELAYS) + 1):
        processes.exits.append((workers_of(supervisor).pid or 0, 1 << 8))  # exit code 1, at once
        supervisor.step(timeout=0)
        if supervisor.start_workers_at is not None:
            clock.now = supervisor.start_workers_at
            supervisor.step(timeout=0)
    assert supervisor.exit_code == EXIT_FAILURE
    assert len(processes.started) == 2 + len(RESTART_DELAYS)


def test_orphans_are_reaped_quietly() -> None:
    """A pid that is not ours (a worker left by a killed nanny) is reaped and ignored."""
    processes = Processes()
    supervisor = started(make(processes))
    processes.exits.append((555, KILLED))
    supervisor.step(timeout=0)
    assert supervisor.exit_code is None and processes.exits == []


def test_signal_before_start_starts_nothing() -> None:
    """A SIGTERM that arrived during start-up stops us before any child is spawned."""
    processes = Processes()
    supervisor = make(processes)
    supervisor.signals.put(signal.SIGTERM)
    assert supervisor.run() == EXIT_OK
    assert processes.started == []


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by SIGKILL (out of memory"),
    ],
)
def test_exit_descriptions(code: int, text: str) -> None:
    """Exit codes and signals are told apart; SIGKILL comes with a hint."""
    assert text in describe_exit(code)


def worker_only(processes: Processes, clock: Clock, answers: list[str | None]) -> Supervisor:
    """A DASK_ROLE=worker supervisor whose probe gives `answers` in turn (then None)."""
    child = Child("workers", ["workers"], {}, spawn=processes.spawn, kill=processes.kill)
    return Supervisor(
        None, child, probe=lambda: answers.pop(0) if answers else None,
        waitpid=processes.waitpid, clock=clock,
    )  # fmt: skip


def test_worker_only_waits_for_the_scheduler_with_backoff() -> None:
    """No scheduler yet: no worker starts; each look waits longer; once it answers they start."""
    processes, clock = Processes(), Clock()
    supervisor = worker_only(processes, clock, ["refused", "refused", "refused"])
    supervisor.step(timeout=0)
    supervisor.start_workers_at = clock.now
    delays = []
    for _ in range(3):
        supervisor.start_due()
        assert processes.started == [] and supervisor.start_workers_at is not None
        delays.append(supervisor.start_workers_at - clock.now)
        clock.now = supervisor.start_workers_at
    assert delays == sorted(delays) and delays[0] < delays[-1]
    supervisor.start_due()
    assert len(processes.started) == 1 and supervisor.exit_code is None


def test_worker_only_never_gives_up() -> None:
    """Workers that keep exiting (their scheduler keeps going away) never end the container."""
    processes, clock = Processes(), Clock()
    supervisor = worker_only(processes, clock, [])
    supervisor.start_workers_at = clock.now
    supervisor.start_due()
    for _ in range(3 * len(RESTART_DELAYS)):
        processes.exits.append(
            (workers_of(supervisor).pid or 0, 0) if supervisor.workers else (0, 0)
        )
        supervisor.step(timeout=0)
        clock.now = max(clock.now, supervisor.start_workers_at or 0)
        supervisor.step(timeout=0)
    assert supervisor.exit_code is None
    assert len(processes.started) == 1 + 3 * len(RESTART_DELAYS)


def test_worker_only_stop_stops_the_workers() -> None:
    """SIGTERM with no scheduler of our own: the workers get SIGTERM, exit code 0."""
    processes, clock = Processes(), Clock()
    supervisor = worker_only(processes, clock, [])
    supervisor.start_workers_at = clock.now
    supervisor.start_due()
    supervisor.signals.put(signal.SIGTERM)
    supervisor.step(timeout=0)
    supervisor.stop()
    assert (101, signal.SIGTERM) in processes.sent and supervisor.exit_code == EXIT_OK


def test_workers_closed_by_the_scheduler_start_again_without_counting() -> None:
    """`dask worker` exiting 0 (the scheduler closed every nanny) is no crash: they start again,
    however often it happens, and the container never gives up."""
    processes, clock = Processes(), Clock()
    supervisor = started(make(processes, clock))
    for _ in range(3 * len(RESTART_DELAYS)):
        processes.exits.append((workers_of(supervisor).pid or 0, EXITED_0))
        supervisor.step(timeout=0)
        assert supervisor.start_workers_at is not None
        clock.now = supervisor.start_workers_at
        supervisor.step(timeout=0)
        assert workers_of(supervisor).running
    assert supervisor.exit_code is None
    assert len(processes.started) == 2 + 3 * len(RESTART_DELAYS)


def test_scheduler_shut_down_on_request_exits_0() -> None:
    """The scheduler exiting 0 (client.shutdown()) stops the workers; the container exits 0."""
    processes = Processes()
    supervisor = started(make(processes))
    processes.exits.append((101, EXITED_0))
    supervisor.step(timeout=0)
    assert supervisor.exit_code == EXIT_OK
    supervisor.stop()
    assert (102, signal.SIGTERM) in processes.sent


class Certificate:
    """Stands in for rotation.ServedCertificate: counts what the supervisor asks of it."""

    def __init__(self) -> None:
        self.reloads = self.reports = 0

    def reload(self) -> None:
        self.reloads += 1

    def report(self) -> None:
        self.reports += 1


def test_sighup_reloads_the_certificate_and_a_day_brings_its_expiry_line() -> None:
    """SIGHUP asks for a reload and nothing else; the expiry line comes once a day."""
    processes, clock, certificate = Processes(), Clock(), Certificate()
    supervisor = started(make(processes, clock))
    supervisor.certificate = certificate  # type: ignore[assignment]
    supervisor.signals.put(signal.SIGHUP)
    supervisor.step(timeout=0)
    assert (certificate.reloads, certificate.reports) == (1, 0)
    assert supervisor.exit_code is None and processes.sent == []
    clock.now += DAY
    supervisor.step(timeout=0)
    supervisor.step(timeout=0)
    assert certificate.reports == 1

"""The supervisor with scripted processes and a clock that moves only when the supervisor waits (as
long as it asks to) or the test moves it: what it starts, what it signals, what it logs."""

from __future__ import annotations

import itertools
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from entrypoint.children import Child, describe_exit
from entrypoint.supervisor import AFTER_DRAIN, DAY, STABLE_AFTER, Backoff, Stop, Supervisor

TERM, INT, HUP, KILL = signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL
EXITED_0, EXITED_1, KILLED = 0, 1 << 8, int(signal.SIGKILL)  # wait statuses
DYING = 0.05  # seconds from SIGKILL until the process can be reaped


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.INFO, logger="entrypoint"):
        yield


class World:
    """Fake processes, signals and time. Pids count up from 100 (the scheduler is 101, the workers
    102). A process exits on SIGTERM unless told to ignore it; on SIGKILL (to its group) it is gone
    a moment later (DYING), as in the kernel."""

    def __init__(self, *, ignore_sigterm: bool = False, probe: list[str | None] | None = None):
        self.now = 1000.0
        self.next_pid = 100
        self.started: list[tuple[int, str]] = []
        self.start_times: list[float] = []
        self.sent: list[tuple[int, signal.Signals]] = []
        self.exits: list[tuple[float, int, int]] = []  # (when, pid, wait status) not yet reaped
        self.signals: list[int] = []  # delivered one per wait, in order
        self.later: list[tuple[float, int]] = []  # (when, signal): delivered at that time
        self.ignore_sigterm = ignore_sigterm
        self.answers = probe

    def spawn(self, argv: list[str], env: dict[str, str]) -> int:
        self.next_pid += 1
        self.started.append((self.next_pid, argv[0]))
        self.start_times.append(self.now)
        return self.next_pid

    def kill(self, pid: int, signum: int) -> None:
        self.sent.append((pid, signal.Signals(signum)))
        if signum == KILL:
            self.exits.append((self.now + DYING, abs(pid), KILLED))
        elif signum == TERM and not self.ignore_sigterm:
            self.exit(pid, EXITED_0)

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        assert (pid, options) == (-1, os.WNOHANG)
        if not self.exits:
            raise ChildProcessError
        when, exited, status = self.exits[0]
        if when > self.now:
            return 0, 0  # children left, none exited yet
        self.exits.pop(0)
        return exited, status

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float) -> int | None:
        """A signal if one is due; SIGCHLD as soon as a process exits; else `timeout` passes."""
        if self.signals:
            return self.signals.pop(0)
        if self.later and self.later[0][0] <= self.now + timeout:
            when, signum = self.later.pop(0)
            self.now = max(self.now, when)
            return signum
        if self.exits and self.exits[0][0] <= self.now + timeout:
            self.now = max(self.now, self.exits[0][0])
            return signal.SIGCHLD
        self.now += timeout
        return None

    def probe(self) -> str | None:
        assert self.answers is not None
        return self.answers.pop(0) if self.answers else None

    def exit(self, pid: int, status: int) -> None:
        self.exits.append((self.now, pid, status))

    def terms(self) -> list[int]:
        return [pid for pid, sig in self.sent if sig == TERM]


def supervisor(world: World, *, scheduler: bool = True, drain: float = 0.0) -> Supervisor:
    def child(role: str) -> Child:
        return Child(role, [role], {}, spawn=world.spawn, kill=world.kill)

    return Supervisor(
        child("scheduler") if scheduler else None, child("workers"),
        probe=world.probe if world.answers is not None else None,
        waitpid=world.waitpid, clock=world.clock, wait=world.wait, drain=drain,
    )  # fmt: skip


def started(world: World, **options: Any) -> Supervisor:
    """Both children started, as `run` starts them: the scheduler pid 101, the workers 102."""
    running = supervisor(world, **options)
    running.turn(timeout=0)
    if scheduler := running.children.get("scheduler"):
        scheduler.start(world.now)
    running.workers_due = world.now
    running.start_due()
    return running


def run_to_the_end(running: Supervisor) -> Stop:
    while running.stop is None:
        running.start_due()
        running.turn(timeout=0.5)
    running.shut_down(running.stop)
    return running.stop


def test_sigterm_stops_workers_then_scheduler_and_exits_0(caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM: the workers get SIGTERM first, the scheduler once they are gone; exit code 0."""
    world = World()
    running = started(world)
    world.signals.append(TERM)
    stop = run_to_the_end(running)
    assert world.terms() == [102, 101]
    assert stop == Stop("SIGTERM received", 0)
    assert str(stop) == "stopped: SIGTERM received, exit code 0"
    assert "stopping: SIGTERM received" in caplog.text


def test_children_that_ignore_sigterm_are_killed_with_their_group_after_their_grace() -> None:
    """Past its grace (workers 5 s, then the scheduler 2 s), each process group gets SIGKILL."""
    world = World(ignore_sigterm=True)
    running = started(world)
    world.signals.append(INT)
    began = world.now
    run_to_the_end(running)
    assert [s for s in world.sent if s[1] != TERM] == [(-102, KILL), (-101, KILL)]
    assert world.now - began == pytest.approx(5.0 + 2.0, abs=1.0)
    assert all(child.pid is None for child in running.children.values())


def test_a_second_signal_cuts_the_grace_and_everything_is_still_reaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second SIGTERM during the grace: SIGKILL at once for each group, every child reaped (the
    wait after SIGKILL is not cut), and the Stop says it was hurried."""
    world = World(ignore_sigterm=True)
    running = started(world)
    world.signals += [TERM, TERM]
    began = world.now
    stop = run_to_the_end(running)
    assert stop.hurried and "hurried by a second signal" in str(stop)
    assert world.now - began < 1.0
    assert [s for s in world.sent if s[1] == KILL] == [(-102, KILL), (-101, KILL)]
    assert all(child.pid is None for child in running.children.values())
    assert world.exits == []
    assert "second stop signal: not waiting any longer" in caplog.text


def test_draining_workers_get_their_budget_and_a_second_signal_still_hurries() -> None:
    """Workers that drain on a stop (a worker-only container) get their drain budget before the
    close's grace (AFTER_DRAIN), then SIGKILL; a second signal in the middle ends it at once."""
    world = World(ignore_sigterm=True)
    running = started(world, scheduler=False, drain=20.0)
    world.signals.append(TERM)
    began = world.now
    run_to_the_end(running)
    assert world.now - began == pytest.approx(20.0 + AFTER_DRAIN, abs=1.0)
    assert [s for s in world.sent if s[1] == KILL] == [(-101, KILL)]

    world = World(ignore_sigterm=True)
    running = started(world, scheduler=False, drain=20.0)
    began = world.now
    world.signals.append(TERM)
    world.later.append((began + 5.0, TERM))
    assert run_to_the_end(running).hurried
    assert world.now - began == pytest.approx(5.0, abs=1.0)


def test_scheduler_death_stops_the_container_non_zero() -> None:
    """The scheduler killed: stop with exit 1, the workers given only a second (orphaned)."""
    world = World(ignore_sigterm=True)
    running = started(world)
    world.exit(101, KILLED)
    began = world.now
    stop = run_to_the_end(running)
    assert stop.exit_code == 1 and stop.orphaned and "the cluster is gone" in stop.reason
    assert world.terms() == [102] and (-102, KILL) in world.sent
    assert world.now - began == pytest.approx(1.0, abs=0.6)


def test_scheduler_shut_down_on_request_exits_0() -> None:
    """The scheduler exiting 0 (client.shutdown()) stops the workers; the container exits 0."""
    world = World()
    running = started(world)
    world.exit(101, EXITED_0)
    stop = run_to_the_end(running)
    assert stop == Stop("the scheduler was shut down (client.shutdown())", 0, orphaned=True)
    assert world.terms() == [102]


def test_failed_workers_start_again_after_a_growing_delay_then_give_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`dask worker` failing at once: started again after 1, 2, 4, 8, 16 s; the sixth failure in a
    row stops the container with exit 1 instead of looping."""
    world = World()
    running = started(world)
    failed_at: list[float] = []
    while running.stop is None:
        if len(world.started) > len(failed_at) + 1:  # the workers run: they fail at once
            world.exit(world.next_pid, EXITED_1)
            failed_at.append(world.now)
        running.turn(timeout=0.5)
        running.start_due()
    restarted_at = world.start_times[2:]
    delays = [start - failed for failed, start in zip(failed_at[:-1], restarted_at, strict=True)]
    assert delays == [1, 2, 4, 8, 16]
    assert running.stop == Stop("the workers failed 6 times in a row", 1)
    assert "starting them again in 16 s" in caplog.text


def test_workers_closed_by_the_scheduler_start_again_without_counting() -> None:
    """`dask worker` exiting 0 (the scheduler closed every nanny) is no failure: they start again
    after a second, however often it happens."""
    world = World()
    running = started(world)
    for _ in range(12):
        world.exit(world.next_pid, EXITED_0)
        running.turn(timeout=0)
        running.turn(timeout=1.0)
        running.start_due()
    assert running.stop is None and len(world.started) == 2 + 12


def test_orphans_are_reaped_quietly() -> None:
    """A pid that is not ours (a worker process left by a killed nanny) is reaped and ignored."""
    world = World()
    running = started(world)
    world.exit(555, KILLED)
    running.turn(timeout=0)
    assert running.stop is None and world.exits == []


def test_a_signal_during_start_up_starts_nothing() -> None:
    """A SIGTERM that arrived before the supervisor ran stops it before any child is spawned."""
    world = World()
    world.signals.append(TERM)
    assert supervisor(world).run() == Stop("SIGTERM received", 0)
    assert world.started == []


def test_sighup_reloads_and_a_day_brings_the_expiry_line() -> None:
    """SIGHUP asks the certificate for a reload and nothing else; its expiry line comes daily."""

    class Certificate:
        reloads = reports = 0

        def reload(self) -> None:
            self.reloads += 1

        def report(self) -> None:
            self.reports += 1

    world, certificate = World(), Certificate()
    running = started(world)
    running.certificate = certificate
    world.signals.append(HUP)
    running.turn(timeout=0)
    assert (certificate.reloads, certificate.reports) == (1, 0)
    assert running.stop is None and world.sent == []
    world.now += DAY
    running.turn(timeout=0)
    assert certificate.reports == 1


def test_worker_only_waits_for_the_scheduler_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No scheduler yet: no worker starts; each look waits longer; once it answers they start."""
    world = World(probe=["refused", "refused", "refused"])
    running = started(world, scheduler=False)
    while not world.started:
        running.turn(timeout=0.5)
        running.start_due()
    assert caplog.text.count("waiting for the scheduler: refused") == 3
    assert world.now - 1000.0 == pytest.approx(1 + 2 + 4, abs=0.6)


def test_worker_only_never_gives_up_and_stops_its_workers() -> None:
    """Workers that keep failing at once, while the scheduler answers, never stop the container
    but are started again after 1, 2, 4, ... 30 s, never at once; a SIGTERM then stops them,
    exit 0."""
    world = World(probe=[])
    running = started(world, scheduler=False)
    for _ in range(20):
        world.exit(world.next_pid, EXITED_1)
        starts = len(world.started)
        while len(world.started) == starts:
            running.turn(timeout=0.5)
            running.start_due()
    times = world.start_times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    expected = [min(30.0, 2.0**n) for n in range(20)]
    assert gaps == pytest.approx(expected, abs=0.6)
    assert running.stop is None and len(world.started) == 21
    world.signals.append(TERM)
    assert run_to_the_end(running).exit_code == 0
    assert world.terms() == [world.next_pid]


def test_worker_only_backoff_starts_afresh_after_a_stable_run() -> None:
    """A `dask worker` that ran STABLE_AFTER before failing is started again after 1 s; one that
    exits 0 (its scheduler closed it) is started again at once."""
    world = World(probe=[])
    running = started(world, scheduler=False)
    for _ in range(3):
        world.exit(world.next_pid, EXITED_1)
        running.turn(timeout=0)
        world.now = running.workers_due or world.now
        running.start_due()
    world.now += STABLE_AFTER
    world.exit(world.next_pid, EXITED_1)
    running.turn(timeout=0)
    assert running.workers_due == pytest.approx(world.now + 1.0)
    world.now = running.workers_due or world.now
    running.start_due()
    world.exit(world.next_pid, EXITED_0)
    running.turn(timeout=0)
    assert running.workers_due == pytest.approx(world.now)


def test_backoff_doubles_up_to_its_cap_and_gives_up_after_its_attempts() -> None:
    """One backoff type for restarts (limited) and for waiting on a scheduler (forever)."""
    limited, forever = Backoff(1, 16, attempts=5), Backoff(1, 30)
    assert [limited.next() for _ in range(6)] == [1, 2, 4, 8, 16, None]
    assert [forever.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    limited.reset()
    assert limited.next() == 1


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

"""One interpreter's imports for the whole container (entrypoint.forks): PID 1 forks only while it
has one thread and no event loop; a forked child starts as a spawned one would (its own process
group, default signal handlers, no blocked signal, its environment, config and log format); on the
real image every process is a fork of PID 1 and the cgroup counts their shared pages once.

The forks run in a fresh interpreter of their own (`run`), as PID 1 is: this test process has
threads of its own (other tests' clients), so it may not fork."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dask.utils import parse_bytes

from entrypoint.cluster import LOG_FORMAT, pid1_environment
from tests.containers import Container, docker

ROOT = Path(__file__).resolve().parents[1]
HANG = 60  # seconds: a bound that only catches a hang


def pid1_like_environment() -> dict[str, str]:
    """What PID 1 starts with (the entrypoint's pid1_environment), able to import this checkout."""
    base = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    return {**pid1_environment(base), "PYTHONPATH": str(ROOT)}


def run(code: str, env: dict[str, str] | None = None) -> str:
    """Run `code` in a new interpreter (PID 1's environment unless `env`); its last output line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env or pid1_like_environment(), capture_output=True, text=True, timeout=HANG,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_pid1s_imports_leave_it_fork_safe() -> None:
    """After PID 1's warm-up (distributed, the dashboard, the workers' modules) there is one
    thread and no event loop: numpy's BLAS pool stays unstarted (OPENBLAS_NUM_THREADS=1 from the
    nannies' pre-spawn variables, in PID 1's environment)."""
    assert pid1_like_environment()["OPENBLAS_NUM_THREADS"] == "1"
    code = """
        import os
        from entrypoint import forks
        forks.warm_up()
        for modules in forks.CHILD_MODULES.values():
            forks.import_modules(modules)
        print(forks.fork_problem())
    """
    assert run(code) == "None"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no thread on one CPU")
def test_without_pid1s_environment_numpy_starts_a_thread_and_forks_are_refused() -> None:
    """The check has teeth: without those variables OpenBLAS starts its pool as numpy is
    imported, and PID 1 would refuse to fork."""
    env = {
        name: value
        for name, value in pid1_like_environment().items()
        if name not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    code = """
        import os
        from entrypoint import forks
        forks.warm_up()
        try:
            forks.fork(lambda: 0)
        except forks.ForkRefused as refused:
            print(refused)
    """
    assert run(code, env).startswith("not forking with 2 threads")


def test_fork_is_refused_while_another_thread_runs() -> None:
    """A thread (waiting on an event, as a pool thread does) makes fork refuse."""
    code = """
        import threading
        from entrypoint import forks
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        try:
            forks.fork(lambda: 0)
        except forks.ForkRefused as refused:
            print(refused)
        finally:
            stop.set()
    """
    assert run(code) == "not forking with 2 threads"


def test_fork_is_refused_while_an_event_loop_exists() -> None:
    """An asyncio loop, running or not, makes fork refuse: its selector and callbacks would be
    the child's too."""
    code = """
        import asyncio
        from entrypoint import forks
        loop = asyncio.new_event_loop()
        try:
            forks.fork(lambda: 0)
        except forks.ForkRefused as refused:
            print(str(refused).split(":")[0])
    """
    assert run(code) == "not forking with an event loop exists"


def test_a_child_never_returns_into_its_parents_code(tmp_path: Path) -> None:
    """Whatever the child's exit path raises (here: its stdout closed, as multiprocessing's
    resource tracker closes it, so the final flush fails), it exits: the code after the fork runs
    in the parent alone (PID 1's would remove the private files)."""
    after = tmp_path / "after-the-fork"
    code = f"""
        import os, sys
        from entrypoint import forks
        pid = forks.fork(lambda: sys.stdout.close() or 0)
        with open({str(after)!r}, "a") as record:
            record.write(f"{{os.getpid()}}\\n")
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """
    assert run(code) == "0"
    assert len(after.read_text().splitlines()) == 1


def spawn_probe(
    tmp_path: Path, *, sigterm_at_once: bool
) -> tuple[dict[str, object], int, dict[str, str]]:
    """`forks.spawn` of tests/fork_probe.py from a warm interpreter that handles SIGTERM as PID 1
    does (a handler that only queues): what the child found, its exit code, its environment."""
    out = tmp_path / "facts.json"
    child_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "DASK_DASK_TLS_TEST__PROBE": "yes",
        "DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": LOG_FORMAT.format(role="probe"),
    }
    argv = [sys.executable, "-P", "-m", "tests.fork_probe", str(out)]
    argv += ["--wait"] if sigterm_at_once else []
    code = f"""
        import os, signal
        from entrypoint import forks
        queued = []
        signal.signal(signal.SIGTERM, lambda signum, frame: queued.append(signum))
        forks.warm_up()
        pid = forks.spawn({argv!r}, {child_env!r})
        if {sigterm_at_once!r}:
            os.kill(pid, signal.SIGTERM)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """
    code_returned = int(run(code))
    facts = json.loads(out.read_text()) if out.exists() else {}
    return facts, code_returned, child_env


def test_a_forked_child_starts_as_a_spawned_one(tmp_path: Path) -> None:
    """Its own process group, no blocked signal, default handlers, exactly its environment, dask
    config and distributed's log format from it, the gc on; its exit code reaches the parent."""
    facts, code, env = spawn_probe(tmp_path, sigterm_at_once=False)
    assert code == 3
    assert facts["pgid"] == facts["pid"]
    assert facts["blocked"] == []
    assert facts["default_handlers"] is True
    assert facts["environ"] == env
    assert facts["config"] == "yes"
    assert facts["log_format"] == env["DASK_DISTRIBUTED__ADMIN__LOG_FORMAT"]
    assert facts["gc"] is True
    assert facts["comm"] == "dask"


def test_a_sigterm_sent_at_once_ends_the_child(tmp_path: Path) -> None:
    """A SIGTERM sent the moment the child exists is never caught by a copy of its parent's
    handler (which would only queue it): the child dies of it, as a spawned process would."""
    _, code, _ = spawn_probe(tmp_path, sigterm_at_once=True)
    assert code == -signal.SIGTERM


PROCESSES = """
import json, os
from pathlib import Path
table = []
for proc in Path("/proc").iterdir():
    if not proc.name.isdigit() or int(proc.name) == os.getpid():
        continue
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        status = (proc / "status").read_text()
        command = (proc / "cmdline").read_bytes().replace(b"\\0", b" ").decode().strip()
    except FileNotFoundError:
        continue
    rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS")), 0)
    table.append((int(proc.name), int(fields[1]), int(fields[2]), rss, command))
print(json.dumps(table))
"""


def process_table(container: Container) -> list[tuple[int, int, int, int, str]]:
    """(pid, ppid, pgid, RSS in KiB, command line) of the container's processes, less any
    `docker exec` (this very one, the health check's) but PID 1."""
    found = json.loads(container.exec("/opt/venv/bin/python", "-c", PROCESSES))
    return [tuple(row) for row in found if row[1] != 0 or row[0] == 1]


@pytest.mark.container
def test_every_process_is_a_fork_of_pid1_and_shares_its_pages(cluster: Container) -> None:
    """No interpreter starts after PID 1: every process has PID 1's command line. The scheduler
    and `dask worker` are PID 1's children, each leading its process group; the forkserver, its
    resource tracker and the worker processes are in `dask worker`'s. The cgroup counts the
    pages they share once: the container's memory is under half the sum of their RSS."""
    table = process_table(cluster)
    by_pid = {row[0]: row for row in table}
    scheduler, workers = int(cluster.pid_of("scheduler")), int(cluster.pid_of("workers"))
    assert {row[4] for row in table} == {by_pid[1][4]}, table
    assert {row[0] for row in table if row[1] == 1} == {scheduler, workers}, table
    assert by_pid[scheduler][2] == scheduler and by_pid[workers][2] == workers, table
    others = set(by_pid) - {1, scheduler, workers}
    assert len(others) == 2 + 2 and {by_pid[pid][2] for pid in others} == {workers}, table
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cluster.name).stdout
    in_cgroup = parse_bytes(usage.split("/")[0].strip())
    summed = sum(row[3] for row in table) * 1024
    assert in_cgroup < summed / 2, (in_cgroup, summed, table)

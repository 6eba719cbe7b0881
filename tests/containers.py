"""A container of the image under test, driven through the real docker CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from entrypoint.contract import DASHBOARD_PORT, SCHEDULER_PORT

DOCKER = os.environ.get("DOCKER") or (
    "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
)
# The names of this run's containers: Container's, and docker-compose's for a project named
# dasktls<pid> (tests/test_multihost.py).
OURS = (f"dask-tls-test-{os.getpid()}-", f"dasktls{os.getpid()}_")
# "the README's hardened run": a read-only root, a tmpfs for /tmp
HARDENED = ["--read-only", "--tmpfs", "/tmp"]
REPORTED_LOG_CHARS = 20_000  # the end of each container's logs in a failed test's report
_removed: list[tuple[str, str]] = []  # (name, logs) of the containers removed during this test


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


class Container:
    """Started detached with an ephemeral loopback port for 8786; removed by `remove()`."""

    def __init__(
        self,
        image: str,
        env: Mapping[str, str],
        *,
        docker_args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        self.name = name or f"{OURS[0]}{time.monotonic_ns()}"
        env_args = [arg for key in env for arg in ("-e", key)]
        # -e NAME passes the value from our environment: the PEM never sits on a command line
        subprocess.run(
            [DOCKER, "run", "-d", "--name", self.name, "--health-interval", "1s",
             "-p", f"127.0.0.1::{SCHEDULER_PORT}", "-p", f"127.0.0.1::{DASHBOARD_PORT}",
             *env_args, *docker_args, image],
            env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip

    def port(self, container_port: int = SCHEDULER_PORT) -> int:
        output = docker("port", self.name, f"{container_port}/tcp").stdout
        return int(output.splitlines()[0].rsplit(":", 1)[1])

    @property
    def address(self) -> str:
        return f"tls://127.0.0.1:{self.port()}"

    @property
    def ip(self) -> str:
        """The container's address on Docker's bridge: reached without docker-proxy in between."""
        return self.state_of("{{.NetworkSettings.IPAddress}}")

    def state_of(self, template: str) -> str:
        return docker("inspect", "-f", template, self.name).stdout.strip()

    def state(self, field: str) -> str:
        return docker("inspect", "-f", f"{{{{.State.{field}}}}}", self.name).stdout.strip()

    def running(self) -> bool:
        return self.state("Running") == "true"

    def logs(self) -> str:
        return logs_of(self.name)

    def exec(self, *command: str, check: bool = True) -> str:
        # env -i: a docker exec inherits the container's environment, PEM included
        return docker("exec", self.name, "/usr/bin/env", "-i", *command, check=check).stdout

    def pid_of(self, role: str) -> str:
        """The pid of PID 1's child `role` ("scheduler", "workers") as the supervisor last started
        it: the processes are forks of PID 1 and share its command line."""
        started = re.findall(rf"entrypoint: {role}\[(\d+)\] started", self.logs())
        assert started, f"no {role} started:\n{self.logs()}"
        return str(started[-1])

    def kill_worker_group(self) -> None:
        """SIGKILL the `dask worker` process; return once the supervisor has logged its death."""
        pid = self.pid_of("workers")
        self.exec("/bin/sh", "-c", f"kill -KILL {pid}")
        death = f"workers[{pid}] was killed by SIGKILL"
        self.wait_until(lambda: death in self.logs(), "the death logged")

    def private_dir(self) -> str:
        """The private directory, found as the container's processes find it: named after the
        container's mount namespace."""
        inode = self.exec("/usr/bin/stat", "-L", "-c", "%i", "/proc/self/ns/mnt").strip()
        return f"/dev/shm/dask-tls-{inode}"

    def zombies(self) -> list[str]:
        """Processes in state Z (dead, not reaped) in the container."""
        states = self.exec("/bin/sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null")
        return [line for line in states.splitlines() if line.split(") ", 1)[-1].startswith("Z")]

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll `condition`; fail with the logs when the container exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if not self.running():
                raise AssertionError(f"container exited before {what}:\n{self.logs()}")
            time.sleep(0.25)
        raise AssertionError(f"no {what} within {timeout:.0f} s:\n{self.logs()}")

    def wait_exited(self, timeout: float) -> int:
        """The container's exit code once it exits; fails with the logs after `timeout`."""
        try:
            result = docker("wait", self.name, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout:.0f} s:\n{self.logs()}") from None
        return int(result.stdout.strip())

    def wait_healthy(self, timeout: float = 60) -> None:
        self.wait_until(lambda: self.state("Health.Status") == "healthy", "healthy status", timeout)

    def remove(self) -> None:
        remove_container(self.name)


def healthy_container(image: str, env: Mapping[str, str]) -> Iterator[Container]:
    """A container of `image` with `env`, once healthy; removed afterwards (a fixture's body)."""
    container = Container(image, env)
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()


def logs_of(container: str) -> str:
    result = docker("logs", container, check=False)
    return result.stdout + result.stderr


def remove_container(name: str) -> None:
    """`docker rm -f -v`, keeping the container's logs for the report of the test, should it fail
    (conftest.py attaches them)."""
    _removed.append((name, logs_of(name)))
    docker("rm", "-f", "-v", name, check=False)


def forget_removed() -> None:
    _removed.clear()


def logs_for_a_report() -> list[tuple[str, str]]:
    """(name, the end of its logs) of each container this run removed during the current test,
    then of each of this run's containers still there."""
    filters = [arg for prefix in OURS for arg in ("--filter", f"name={prefix}")]
    listed = docker("ps", "-a", "--format", "{{.Names}}", *filters, check=False).stdout
    there = [(name, logs_of(name)) for name in sorted(listed.split())]
    return [(name, logs[-REPORTED_LOG_CHARS:]) for name, logs in [*_removed, *there]]


def unexpected_tracebacks(logs: str) -> list[str]:
    """The log lines under which a traceback follows, less distributed's own INFO "Batched Comm
    Closed": it logs that, with a traceback, when a peer closes during an ordinary shutdown
    (upstream, dask/distributed#3129). Any other traceback is ours to explain."""
    found, last_log_line = [], ""
    for line in logs.splitlines():
        if line[:4].isdigit():  # a log record's first line starts with its timestamp
            last_log_line = line
        elif (
            line.startswith("Traceback")
            and "distributed.batched: Batched Comm Closed" not in last_log_line
        ):
            found.append(last_log_line)
    return found


def docker_available() -> bool:
    return shutil.which(DOCKER) is not None and docker("info", check=False).returncode == 0


def wait_for_log(container: str, text: str, timeout: float = 60) -> None:
    """Poll a container's logs (by name) for `text`; fail with them if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in (logs := logs_of(container)):
            return
        running = docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout
        if running.strip() != "true":
            raise AssertionError(f"{container} stopped before {text!r}:\n{logs}")
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} from {container} in {timeout:.0f} s:\n{logs_of(container)}")


def wait_for_state(container: str, template: str, wanted: str, timeout: float = 120) -> None:
    """Poll `docker inspect -f template` of a container (by name) until it says `wanted`."""
    deadline = time.monotonic() + timeout
    while (state := docker("inspect", "-f", template, container).stdout.strip()) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"{container}: {state!r}, not {wanted!r}, after {timeout:.0f} s")
        time.sleep(0.5)

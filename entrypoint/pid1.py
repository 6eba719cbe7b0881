"""The container's PID 1 once the entrypoint has exec'd into it (`python -m entrypoint.pid1 DIR`,
with a clean environment): the plan in DIR wired to the supervisor, and the last line it logs."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from entrypoint import forks
from entrypoint.children import Child
from entrypoint.cluster import (
    LOG_FORMAT,
    Plan,
    child_environment,
    scheduler_command,
    workers_command,
)
from entrypoint.errors import EXIT_FAILURE, EXIT_OK
from entrypoint.private_files import remove_private_files
from entrypoint.rotation import ServedCertificate
from entrypoint.supervisor import Probe, Supervisor

log = logging.getLogger("entrypoint")


def reachable(address: str, timeout: float = 2.0) -> Probe:
    """A probe: can a TCP connection to the tls://HOST:PORT `address` be opened?"""
    from distributed.comm.addressing import parse_host_port  # imported already (forks.warm_up)

    host, port = parse_host_port(address.removeprefix("tls://"))

    def probe() -> str | None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as error:
            return f"{address}: {error.strerror or error}"
        return None

    return probe


def supervisor_for(plan: Plan, environ: dict[str, str]) -> Supervisor:
    def child(role: str, log_tag: str, command: list[str]) -> Child:
        env = child_environment(environ, plan, log_tag)
        return Child(role, command, env, spawn=forks.spawn)

    return Supervisor(
        child("scheduler", "scheduler", scheduler_command(plan)) if plan.runs_scheduler else None,
        child("workers", "worker", workers_command(plan)) if plan.runs_workers else None,
        probe=reachable(plan.scheduler_address) if plan.role == "worker" else None,
        certificate=ServedCertificate(plan),
        drain=plan.drain_timeout,
    )


def main(argv: list[str]) -> int:
    """PID 1, with the pid of the entrypoint's checks (`start.check`), which run meanwhile: import
    distributed, take the checks' verdict, then supervise; the exit code."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT.format(role="supervisor")
    )
    directory, checks = Path(argv[1]), int(argv[2])
    try:
        try:
            # the signals stay blocked meanwhile: one sent now waits for the supervisor's handlers
            forks.warm_up()
        finally:
            checked = exit_code_of(checks)  # whatever happened, they are done writing
        if checked != EXIT_OK:
            return checked  # the checks said why, in one line; nothing was started
        supervisor = supervisor_for(Plan.load(directory), dict(os.environ))
        supervisor.install_signal_handlers()
        stop = supervisor.run()
    finally:
        remove_private_files(directory)
    log.info("%s", stop)
    return stop.exit_code


def exit_code_of(pid: int) -> int:
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return code if code >= 0 else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main(sys.argv))

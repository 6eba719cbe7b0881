"""A cluster's life on the real engine: it starts, computes on every worker, reports itself healthy
over mutual TLS and logs cleanly; it ends with exit 0 however it is asked to: `docker stop`, also
mid-computation, a SIGTERM during start-up, `client.shutdown()`."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from distributed import Client
from distributed.security import Security

from tests.containers import Container, docker, unexpected_tracebacks
from tests.material import ClusterMaterial, client_security

pytestmark = pytest.mark.container
# A `docker stop` that ends in exit code 0 ended inside Docker's 10 s grace: past it Docker SIGKILLs
# PID 1, exit code 137. That is the stop tests' hang bound (a stop usually takes 0.6 s, with every
# worker busy 2 s); how fast a stop is belongs in `make bench`.


def kills_but_the_schedulers(logs: str) -> list[str]:
    """The log lines about a SIGKILL, less the supervisor's to a scheduler whose 2 s grace ran
    out. That grace is 8x the 0.25 s a scheduler usually takes to close, and a load of 15 on 2
    cores outlasted it: the SIGKILL is then the supervisor doing its job, and the exit code stays
    0. The workers' 5 s grace is 25x their usual 0.2 s: a SIGKILL there means a hang."""
    return [
        line
        for line in logs.splitlines()
        if "SIGKILL" in line and " entrypoint: scheduler[" not in line
    ]


def how_it_holds_sigterm(pid: int) -> str | None:
    """How process `pid` (a container's PID 1 as the host sees it) holds SIGTERM, so that one sent
    now is not lost: "caught" (a handler; blocked too, at times), "blocked" (with no handler yet),
    or None."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {name: value for name, _, value in (line.partition(":") for line in lines)}
    for how, mask in (("caught", "SigCgt"), ("blocked", "SigBlk")):
        if int(fields[mask], 16) >> (signal.SIGTERM - 1) & 1:
            return how
    return None


def wait_until_holding_sigterm(container: Container, timeout: float = 30) -> str:
    """How the container's PID 1 holds SIGTERM, as soon as it does. Before `__main__`'s first line
    blocks it, about 15 ms of interpreter start-up here, PID 1 has no handler and the kernel drops
    a SIGTERM (a fixed sleep before the signal fell into that window under load). Polled from the
    host's /proc every millisecond, so that the signal lands in the rest of start-up (a few hundred
    ms), before the supervisor has a handler: it must stay pending meanwhile."""
    pid, deadline = int(container.state("Pid")), time.monotonic() + timeout
    try:
        while not (how := how_it_holds_sigterm(pid)):
            assert time.monotonic() < deadline, f"PID 1 holds no SIGTERM:\n{container.logs()}"
            time.sleep(0.001)
    except FileNotFoundError:  # PID 1 is gone (pid 0: it never ran)
        raise AssertionError(f"PID 1 exited first:\n{container.logs()}") from None
    return how


def test_the_seeds_client_code_computes(
    image: str, material: ClusterMaterial, pems: dict[str, str]
) -> None:
    """The blog's single self-signed certificate and its exact Security(...) call work unchanged,
    and the workers are sized as asked."""
    env = {
        **material.seed_env(),
        "NUM_WORKERS": "2",
        "THREADS_PER_WORKER": "2",
        "MEMORY_PER_WORKER": "1",
    }
    container = Container(image, env)
    try:
        container.wait_healthy()
        sec = Security(
            tls_ca_file=pems["seed"],
            tls_client_cert=pems["seed"],
            tls_client_key=pems["seed_key"],
            require_encryption=True,
        )
        with Client(container.address, security=sec, timeout="20s") as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
            workers = client.scheduler_info()["workers"].values()
            assert [(w["nthreads"], w["memory_limit"]) for w in workers] == [(2, 10**9)] * 2
    finally:
        container.remove()


def test_ca_issued_client_computes_across_all_workers(client: Client) -> None:
    """A client certificate from the cluster's CA computes, on every worker."""
    assert client.gather(client.map(lambda x: x * x, range(50))) == [x * x for x in range(50)]
    assert len(client.run(os.getpid)) == 2


def test_healthcheck_is_mutual_tls(cluster: Container) -> None:
    """The HEALTHCHECK says healthy only through its mutual-TLS query of the scheduler, and when
    the served certificate expires."""
    log = docker("inspect", "-f", "{{json .State.Health.Log}}", cluster.name).stdout
    assert "healthy: role all, 2 workers; the cluster certificate expires on" in log


def test_logs_are_tagged_by_role_and_clean(cluster: Container) -> None:
    """Each process logs to the container's output tagged with its role; no error, no secret."""
    logs = cluster.logs()
    for role in ("entrypoint[", "supervisor[1]", "scheduler[", "worker["):
        assert role in logs
    assert unexpected_tracebacks(logs) == [] and "-----BEGIN" not in logs


def test_docker_stop_exits_0_quickly(fresh: Container) -> None:
    """docker stop: workers then scheduler stop, exit code 0, inside the 10 s grace."""
    docker("stop", fresh.name, timeout=30)
    assert fresh.state("ExitCode") == "0", fresh.logs()  # so inside Docker's grace
    logs = fresh.logs()
    assert "SIGTERM received" in logs, logs
    assert kills_but_the_schedulers(logs) == [] and unexpected_tracebacks(logs) == [], logs
    assert logs.index("workers[") < logs.rindex("scheduler[")


def test_docker_stop_during_a_computation(fresh: Container, pems: dict[str, str]) -> None:
    """Stop while every worker is busy: exit 0 inside Docker's 10 s grace, no zombie on the way."""
    client = Client(fresh.address, security=client_security(pems), timeout="20s")
    busy = client.map(time.sleep, [60] * 4, pure=False)
    fresh.wait_until(lambda: sum(len(p) for p in client.processing().values()) >= 2, "busy workers")
    assert fresh.zombies() == []
    docker("stop", fresh.name, timeout=30)
    del busy
    with contextlib.suppress(OSError, ValueError):  # its cluster is gone, as intended
        client.close(timeout=2)
    assert fresh.state("ExitCode") == "0", fresh.logs()  # so inside Docker's grace


def test_sigterm_during_start_up_exits_cleanly(image: str, material: ClusterMaterial) -> None:
    """SIGTERM while start-up holds it blocked: exit 0 within the grace, no error, no SIGKILL."""
    # A tenth of a CPU stretches start-up tenfold (6 s until the supervisor has a handler): under
    # load `docker run` returns late, and the first look at PID 1 must still come before that.
    container = Container(
        image, {**material.ca_env(), "NUM_WORKERS": "2"}, docker_args=["--cpus", "0.1"]
    )
    try:
        assert wait_until_holding_sigterm(container) == "blocked"  # by __main__, not handled yet
        docker("kill", "--signal", "TERM", container.name)
        # the supervisor's longest stop is 9 s (SHUTDOWN's graces and the waits after SIGKILL)
        assert container.wait_exited(timeout=30) == 0, container.logs()
        logs = container.logs()
        assert "SIGTERM received" in logs and "SIGKILL" not in logs, logs
    finally:
        container.remove()


def test_client_shutdown_ends_the_container_with_0(fresh: Container, pems: dict[str, str]) -> None:
    """client.shutdown() is a deliberate end: workers then scheduler stop, exit code 0."""
    client = Client(fresh.address, security=client_security(pems), timeout="20s")
    client.shutdown()
    assert fresh.wait_exited(timeout=60) == 0
    assert "stopped: the scheduler was shut down (client.shutdown()), exit code 0" in fresh.logs()

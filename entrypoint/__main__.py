"""The container's entrypoint: validate, write the private files, then become the supervisor.

The supervisor is exec'd with a clean environment, so that no process in the container, PID 1
included, keeps the PEM in /proc/<pid>/environ (dropping it from os.environ is not enough).
SIGTERM/SIGINT stay blocked across the exec: one that arrives during start-up stays pending until
the supervisor can act on it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from entrypoint import scratch, settings, tls
from entrypoint.cluster import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    LOG_FORMAT,
    PLAN_FILE,
    SECRET_PREFIX,
    Plan,
    clean_environment,
)
from entrypoint.errors import EXIT_FAILURE, EXIT_OK, StartupError
from entrypoint.private_files import (
    PRIVATE_DIR,
    remove_private_files,
    require_tmpfs,
    write_private_files,
)
from entrypoint.supervisor import STOP_SIGNALS

EXIT_USAGE = 64
USAGE = """\
usage: docker run [-p 8786:8786 -p 8787:8787] -e DASK_CLUSTER_CERT -e DASK_CLUSTER_KEY IMAGE
Starts a TLS-only Dask scheduler (8786) with its dashboard (8787) and N workers.
  DASK_CLUSTER_CERT   PEM certificate (self-signed, or issued by DASK_CLUSTER_CA)   required
  DASK_CLUSTER_KEY    PEM private key matching the certificate                       required
  DASK_CLUSTER_CA     PEM CA certificate(s) that issued it                           optional
  NUM_WORKERS         worker processes              (default: CPUs of the container)
  THREADS_PER_WORKER  threads in each worker        (default: CPUs / NUM_WORKERS)
  MEMORY_PER_WORKER   GB, or a size like 512MiB     (default: container memory / NUM_WORKERS)
  DASK_CLUSTER_KEY_PASSPHRASE  passphrase of an encrypted key                        optional
  DASHBOARD_PROTOCOL  https (default, the cluster's certificate) or http
  DASK_ROLE           all (default), scheduler, or worker (with DASK_SCHEDULER_ADDRESS=tls://HOST:8786)
Each PEM may be raw, have literal \\n for newlines, or be single-line base64 of the PEM; or set
NAME_FILE to a file holding it instead (e.g. DASK_CLUSTER_KEY_FILE=/run/secrets/key).
Tools (docker run --rm IMAGE COMMAND --help): certs new|inspect, client-config, gce."""
TOOLS = {"certs", "client-config", "gce"}

log = logging.getLogger("entrypoint")


def main(argv: list[str]) -> int:
    if argv[1:2] and argv[1] in TOOLS:
        from entrypoint import cli

        return cli.main(argv[1:])
    if argv[1:]:
        print(USAGE, file=sys.stderr if argv[1:] != ["--help"] else sys.stdout)
        return EXIT_OK if argv[1:] == ["--help"] else EXIT_USAGE
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT.format(role="entrypoint")
    )
    try:
        environ = prepare()
    except StartupError as error:
        log.error("%s", error)
        return error.exit_code
    supervisor = [sys.executable, "-P", "-m", "entrypoint.supervisor", str(PRIVATE_DIR)]
    try:
        os.execve(sys.executable, supervisor, environ)
    except OSError as error:
        remove_private_files(PRIVATE_DIR)
        log.error("cannot start the supervisor: %s", error.strerror)
    return EXIT_FAILURE


def prepare() -> dict[str, str]:
    """Validate everything, write the private files, return the environment for the supervisor.

    On StartupError nothing is written."""
    environ = dict(os.environ)
    # dask's config system parses every DASK_* variable when dask is imported (settings does):
    # keep the secrets out of it
    for name in environ:
        if name.startswith(SECRET_PREFIX):
            del os.environ[name]
    checked = settings.from_environ(environ)
    material = tls.check(checked, datetime.now(UTC))
    if checked.role != "scheduler":
        scratch.check(Path(checked.scratch_dir))
    require_tmpfs(PRIVATE_DIR)
    plan = Plan.of(PRIVATE_DIR, checked)
    write_private_files(
        PRIVATE_DIR,
        {
            CERT_FILE: material.cert_pem,
            KEY_FILE: material.key_pem,
            CA_FILE: material.ca_pem,
            PLAN_FILE: plan.to_json(),
        },
    )
    log.info("%s", describe(plan))
    return clean_environment(environ)


def describe(plan: Plan) -> str:
    parts = []
    if plan.runs_scheduler:
        dashboard = "https" if plan.dashboard_tls else "http"
        parts.append(f"scheduler tls://:8786, dashboard {dashboard}://:8787")
    if plan.runs_workers:
        limit = float(plan.memory_limit)
        memory = f"{limit:.0%} of the container's" if limit <= 1 else f"{limit / 2**30:.2f} GiB"
        parts.append(
            f"{plan.workers} workers x {plan.threads_per_worker} threads, memory limit "
            f"{memory} each, for {plan.scheduler_address}"
        )
    return f"role {plan.role}: " + "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The container's start: validate, write the private files, then become PID 1's supervisor.

`entrypoint.pid1` is exec'd with a clean environment, so that no process in the container, PID 1
included, keeps the PEM in /proc/<pid>/environ (dropping it from os.environ is not enough). The
signals `__main__` blocked stay blocked across the exec: one that arrives during start-up stays
pending until the supervisor can act on it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint import forks, scratch, settings
from entrypoint.cluster import LOG_FORMAT, Plan, pid1_environment
from entrypoint.contract import (
    CA_FILE,
    CA_VAR,
    CERT_FILE,
    CERT_VAR,
    CRL_FILE,
    CRL_VAR,
    DASHBOARD_PORT,
    DASHBOARD_VAR,
    HTTP_CLIENT_CERT_VAR,
    KEY_FILE,
    KEY_VAR,
    MEMORY_VAR,
    PASSPHRASE_VAR,
    PLAN_FILE,
    ROLE_VAR,
    SCHEDULER_ADDRESS_VAR,
    SCHEDULER_PORT,
    SCRATCH,
    SCRATCH_VAR,
    SECRET_PREFIX,
    THREADS_VAR,
    WORKERS_VAR,
    file_var,
)
from entrypoint.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, StartupError
from entrypoint.private_files import (
    private_dir,
    remove_private_files,
    require_tmpfs,
    shm_is_the_hosts,
    write_private_files,
)

if TYPE_CHECKING:
    from entrypoint.tls import Material

VARIABLES = (  # name, meaning, default
    (CERT_VAR, "PEM certificate (self-signed, or issued by the CA)", "required"),
    (KEY_VAR, "PEM private key matching the certificate", "required"),
    (CA_VAR, "PEM CA certificate(s) that issued it", "optional"),
    (PASSPHRASE_VAR, "passphrase of an encrypted key", "optional"),
    (CRL_VAR, "PEM revocation list of the CA (certs revoke)", "optional"),
    (WORKERS_VAR, "worker processes", "CPUs of the container"),
    (THREADS_VAR, "threads in each worker", "CPUs / workers"),
    (MEMORY_VAR, "GB, or a size like 512MiB", "container memory / workers"),
    (DASHBOARD_VAR, "https (the cluster's certificate) or http", "https"),
    (HTTP_CLIENT_CERT_VAR, "required or none: HTTPS asks for a client certificate", "required"),
    (SCRATCH_VAR, "where workers spill (a disk volume)", SCRATCH),
    (ROLE_VAR, "all, scheduler, or worker", "all"),
    (SCHEDULER_ADDRESS_VAR, f"with {ROLE_VAR}=worker: tls://HOST:{SCHEDULER_PORT}", ""),
)
USAGE = f"""\
usage: docker run [-p {SCHEDULER_PORT}:{SCHEDULER_PORT} -p {DASHBOARD_PORT}:{DASHBOARD_PORT}] \
-e {CERT_VAR} -e {KEY_VAR} IMAGE
Starts a TLS-only Dask scheduler ({SCHEDULER_PORT}) with its dashboard ({DASHBOARD_PORT}) and N \
workers.
{chr(10).join(f"  {name:<29}{meaning:<54}{default}" for name, meaning, default in VARIABLES)}
Each PEM may be raw, have literal \\n for newlines, or be single-line base64 of the PEM; or set
NAME_FILE to a file holding it instead (e.g. {file_var(KEY_VAR)}=/run/secrets/key).
Tools (docker run --rm IMAGE COMMAND --help): certs new|renew|inspect, client-config, gce."""

log = logging.getLogger("entrypoint")


def usage(args: list[str]) -> int:
    """`--help`: the variables, exit 0; any other argument that is not a tool's: a usage error."""
    print(USAGE, file=sys.stdout if args == ["--help"] else sys.stderr)
    return EXIT_OK if args == ["--help"] else EXIT_USAGE


def main() -> int:
    """Exec PID 1's supervisor at once, with a clean environment, while a child of ours validates
    everything and writes the private files (`check`): PID 1 imports distributed meanwhile, and
    waits for the child's verdict before it starts anything. Returns only on a failure."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT.format(role="entrypoint")
    )
    try:
        directory = private_dir()
    except StartupError as error:
        log.error("%s", error)
        return error.exit_code
    environ = dict(os.environ)
    # dask's config system parses every DASK_* variable when dask is imported (pid1_environment
    # and settings do): keep the secrets out of it
    for name in environ:
        if name.startswith(SECRET_PREFIX):
            del os.environ[name]
    supervisor_environ = pid1_environment(environ)
    checks = forks.fork(lambda: check(directory, environ))
    # -P as we were started (the image's ENTRYPOINT): PID 1 finds its modules where we did
    safe_path = ["-P"] if sys.flags.safe_path else []
    supervisor = [sys.executable, *safe_path, "-m", "entrypoint.pid1", str(directory), str(checks)]
    try:
        os.execve(sys.executable, supervisor, supervisor_environ)
    except OSError as error:
        os.waitpid(checks, 0)
        remove_private_files(directory)
        log.error("cannot start the supervisor: %s", error.strerror)
    return EXIT_FAILURE


def check(directory: Path, environ: Mapping[str, str]) -> int:
    """In the child: `prepare`, and the exit code PID 1 waits for (78 for a configuration
    error, which is logged in one line)."""
    try:
        prepare(directory, environ)
    except StartupError as error:
        log.error("%s", error)
        return error.exit_code
    return EXIT_OK


def prepare(directory: Path, environ: Mapping[str, str]) -> None:
    """Validate everything, write the private files in `directory`, say what will run.

    On StartupError nothing is written."""
    checked, material = validate(environ)
    require_tmpfs(directory)
    if shm_is_the_hosts():
        log.warning(
            "/dev/shm is the host's (--ipc=host): while the cluster runs the key is in the host's "
            "%s, readable by the host's root and any process of uid %d, and a SIGKILL leaves it",
            directory, os.geteuid(),
        )  # fmt: skip
    plan = Plan.of(directory, checked, material.not_after).with_revocation_list(
        material.crl_pem is not None, material.crl_next_update
    )
    crl = {} if material.crl_pem is None else {CRL_FILE: material.crl_pem}
    write_private_files(
        directory,
        {
            CERT_FILE: material.cert_pem,
            KEY_FILE: material.key_pem,
            CA_FILE: material.ca_pem,
            **crl,
            PLAN_FILE: plan.to_json(),
        },
    )
    log.info("%s", describe(plan))


def validate(environ: Mapping[str, str]) -> tuple[settings.Settings, Material]:
    """Check every input the user gave: the variables, the certificate and key, the workers'
    scratch space. Raises ConfigError for the first that is wrong; writes nothing."""
    from entrypoint import tls  # cryptography: in the checks' process, not before the exec

    checked = settings.from_environ(environ)
    material = tls.check(checked.pems, datetime.now(UTC))
    if checked.role != "scheduler":
        scratch.check(Path(checked.scratch_dir))
    return checked, material


def describe(plan: Plan) -> str:
    parts = []
    if plan.runs_scheduler:
        dashboard = "https" if plan.dashboard_tls else "http"
        parts.append(
            f"scheduler tls://:{SCHEDULER_PORT}, dashboard {dashboard}://:{DASHBOARD_PORT}"
        )
    if plan.runs_workers:
        size = plan.memory_per_worker
        memory = f"{size / 2**30:.2f} GiB" if size else f"{1 / plan.workers:.0%} of the container's"
        parts.append(
            f"{plan.workers} workers x {plan.threads_per_worker} threads, memory limit "
            f"{memory} each, for {plan.scheduler_address}"
        )
    return f"role {plan.role}: " + "; ".join(parts)

"""What runs: the cluster plan (no secrets; written beside the keys), and the command line and
environment each process gets from it."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from entrypoint.contract import (
    CA_FILE,
    CERT_FILE,
    CRL_FILE,
    DASHBOARD_PORT,
    KEY_FILE,
    PLAN_FILE,
    SCHEDULER_PORT,
    SECRET_PREFIX,
)
from entrypoint.dask_config import DRAIN_TIMEOUT, HOOKS, as_environment, fixed_config, variable
from entrypoint.errors import StartupError
from entrypoint.settings import LOCAL_SCHEDULER, Settings

# Variables a child may inherit; everything else (the secrets above all) is dropped.
PASSED_VARIABLES = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
}
PASSED_PREFIX = "DASK_"
LOG_FORMAT = "%(asctime)s {role}[%(process)d] %(levelname)s %(name)s: %(message)s"
PLAN_VERSION = 1  # of plan.json: raise it when its fields change meaning
OPENSSL_CONF = Path(__file__).with_name("openssl.cnf")  # the key-exchange groups of our TLS profile


@dataclass(frozen=True)
class Plan:
    directory: str
    workers: int
    threads_per_worker: int
    memory_per_worker: int | None  # bytes; None: an equal share of the container's limit
    dashboard_tls: bool = True
    http_client_cert: bool = True  # the HTTP(S) ports ask for a certificate from the cluster's CA
    role: str = "all"
    scheduler_address: str = LOCAL_SCHEDULER
    worker_name: str = "worker"  # the workers are named this, or this-0, this-1, ...
    drain_timeout: float = 0.0  # seconds a stop may spend moving the workers' results away
    secret_files: dict[str, str] = field(default_factory=dict)  # NAME_FILE: path, read on SIGHUP
    expires: str = ""  # the served certificate's expiry, ISO 8601 UTC
    revocation_list: bool = False  # CRL_FILE is there: every process enforces it
    crl_next_update: str = ""  # when the CA promised a newer list, ISO 8601 UTC ("" if never)
    # the scheduler's autoscaler, as dask config (settings.Autoscale.config); empty: none
    autoscale: dict[str, object] = field(default_factory=dict)
    version: int = PLAN_VERSION

    @classmethod
    def of(cls, directory: Path, settings: Settings, expires: datetime) -> Plan:
        sizing = settings.sizing
        return cls(
            directory=str(directory),
            secret_files=settings.secret_files,
            expires=expires.isoformat(),
            workers=0 if settings.role == "scheduler" else sizing.workers,
            threads_per_worker=sizing.threads_per_worker,
            memory_per_worker=sizing.memory_per_worker,
            dashboard_tls=settings.dashboard_tls,
            http_client_cert=settings.http_client_cert,
            role=settings.role,
            scheduler_address=settings.scheduler_address,
            drain_timeout=settings.drain_timeout,
            autoscale=settings.autoscale.config() if settings.autoscale else {},
            # a worker-only container names its workers after itself, for its health check
            worker_name=socket.gethostname() if settings.role == "worker" else "worker",
        )

    @property
    def runs_scheduler(self) -> bool:
        return self.role in ("all", "scheduler")

    @property
    def runs_workers(self) -> bool:
        return self.role in ("all", "worker")

    @classmethod
    def load(cls, directory: Path) -> Plan:
        """The plan the entrypoint wrote; StartupError if another version of the image wrote it."""
        fields = json.loads((directory / PLAN_FILE).read_text())
        if fields.get("version") != PLAN_VERSION:
            raise StartupError(
                f"{directory / PLAN_FILE} is of version {fields.get('version')}, not "
                f"{PLAN_VERSION}: written by another version of the image; restart the container"
            )
        return cls(**fields)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def path(self, name: str) -> str:
        return str(Path(self.directory) / name)

    @property
    def expiry(self) -> datetime:
        return datetime.fromisoformat(self.expires)

    def with_revocation_list(self, given: bool, next_update: datetime | None) -> Plan:
        return dataclasses.replace(
            self,
            revocation_list=given,
            crl_next_update=next_update.isoformat() if next_update else "",
        )


def scheduler_command(plan: Plan) -> list[str]:
    return [
        *_dask("scheduler"),
        "--protocol", "tls",
        "--port", str(SCHEDULER_PORT),
        "--dashboard-address", f":{DASHBOARD_PORT}",
    ]  # fmt: skip


def workers_command(plan: Plan) -> list[str]:
    """One `dask worker` process whose N nannies each keep one worker process alive."""
    return [
        *_dask("worker"),
        plan.scheduler_address,
        "--nworkers", str(plan.workers),
        "--nthreads", str(plan.threads_per_worker),
        "--memory-limit", str(plan.memory_per_worker or 1 / plan.workers),
        "--name", plan.worker_name,
        # no bokeh in the workers (time and memory): the scheduler's dashboard shows them; what
        # HTTP the workers keep (health, metrics) is HTTPS, from the dashboard's TLS settings
        "--no-dashboard",
        # the nannies' preload must be on the command line: `dask worker` hands them an empty
        # tuple that hides the config's (nanny.py), while the workers' comes from the config
        "--preload-nanny", HOOKS,
    ]  # fmt: skip


def _dask(command: str) -> list[str]:
    return [sys.executable, "-P", "-m", f"distributed.cli.dask_{command}"]


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of `environ`: no DASK_CLUSTER_* variable, no value holding a PEM."""
    return {
        name: value
        for name, value in environ.items()
        if (name in PASSED_VARIABLES or name.startswith(PASSED_PREFIX))
        and not name.startswith(SECRET_PREFIX)
        and "-----BEGIN" not in value
    }


def pid1_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment PID 1 is exec'd with: `environ` cleaned, plus what is read only as a
    process starts, for PID 1 and every process forked from it (entrypoint.forks): OpenSSL's
    configuration, and the variables distributed's nannies set for a new worker interpreter."""
    cleaned = clean_environment(environ)
    return {**cleaned, **pre_spawn_environment(cleaned), "OPENSSL_CONF": str(OPENSSL_CONF)}


def pre_spawn_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What a nanny sets before it starts a worker interpreter, taken as `nanny.py` takes it
    (`_get_env_variables("distributed.nanny.pre-spawn-environ")`, a variable of `environ` before
    the config's value, PYTHONHASHSEED 6640 unless set): malloc's trim threshold and one BLAS
    thread, read as a process starts, and the hash seed, which the workers of every container must
    share. Read from distributed's defaults file and dask's config without importing distributed
    (half a second) into the entrypoint."""
    import dask.config
    import yaml

    spec = importlib.util.find_spec("distributed")
    assert spec is not None and spec.origin is not None
    defaults = yaml.safe_load(Path(spec.origin).with_name("distributed.yaml").read_text())
    config = dask.config.merge(defaults, dask.config.config)
    wanted = dask.config.get("distributed.nanny.pre-spawn-environ", config=config)
    found = {name: environ.get(name, str(v)) for name, v in wanted.items() if v is not None}
    if found.get("PYTHONHASHSEED") in (None, "0"):
        found["PYTHONHASHSEED"] = "6640"
    return found


def child_environment(environ: Mapping[str, str], plan: Plan, role: str) -> dict[str, str]:
    """`environ` cleaned, plus dask config that points every TLS setting at the private files,
    requires encryption (no process can listen on or connect to plain tcp://), sets one TLS profile
    and loads our hooks (see dask_config and preload)."""
    fixed = fixed_config(
        plan.path(CERT_FILE), plan.path(KEY_FILE), plan.path(CA_FILE),
        dashboard_tls=plan.dashboard_tls, http_client_cert=plan.http_client_cert,
        crl=plan.path(CRL_FILE) if plan.revocation_list else "",
    )  # fmt: skip
    return {
        # worker processes fork from a server `dask worker` forked from itself as it started
        # (preload.forked_forkserver): no new interpreter imports distributed again
        "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD": "forkserver",
        "DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": LOG_FORMAT.format(role=role),
        **clean_environment(environ),
        **as_environment(fixed),
        variable(DRAIN_TIMEOUT): str(plan.drain_timeout),  # read by the preload's drain_on_stop
        **as_environment(plan.autoscale),  # read by the preload's autoscale (the scheduler)
        "OPENSSL_CONF": str(OPENSSL_CONF),
    }

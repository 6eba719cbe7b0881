"""Settings from the environment. The only module that reads the user's variables."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from entrypoint import intake
from entrypoint.errors import ConfigError

CERT_VAR = "DASK_CLUSTER_CERT"
KEY_VAR = "DASK_CLUSTER_KEY"
CA_VAR = "DASK_CLUSTER_CA"
PASSPHRASE_VAR = "DASK_CLUSTER_KEY_PASSPHRASE"  # noqa: S105 (a variable name)
WORKERS_VAR = "NUM_WORKERS"
THREADS_VAR = "THREADS_PER_WORKER"
MEMORY_VAR = "MEMORY_PER_WORKER"
DASHBOARD_VAR = "DASHBOARD_PROTOCOL"
ROLE_VAR = "DASK_ROLE"
SCHEDULER_ADDRESS_VAR = "DASK_SCHEDULER_ADDRESS"
# dask's `temporary-directory`: workers spill under it, in dask-scratch-space/ (the image: /scratch)
SCRATCH_VAR = "DASK_TEMPORARY_DIRECTORY"
ROLES = ("all", "scheduler", "worker")
LOCAL_SCHEDULER = "tls://127.0.0.1:8786"

MAX_WORKERS = 256
MAX_THREADS = 1024
MIN_WORKER_MEMORY = 128 << 20  # below this a worker cannot even hold its own interpreter
THREADS_PER_CPU_WARNING = 4  # more threads than this per CPU is rarely what anyone wants
PEM_FIX = 'pass the PEM text, e.g. -e {name}="$(cat {what}.pem)", or set {name}_FILE'

log = logging.getLogger("entrypoint")


@dataclass(frozen=True)
class Sizing:
    workers: int
    threads_per_worker: int
    # `dask worker --memory-limit`: bytes, or a fraction (<= 1) of the container's memory limit,
    # which distributed resolves against the cgroup limit.
    memory_limit: str


@dataclass(frozen=True)
class Settings:
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes | None
    sizing: Sizing
    key_passphrase: bytes | None = field(default=None, repr=False)
    dashboard_tls: bool = True
    role: str = "all"
    scheduler_address: str = LOCAL_SCHEDULER  # where the workers connect
    scratch_dir: str = field(default_factory=tempfile.gettempdir)  # as distributed falls back


def from_environ(environ: Mapping[str, str]) -> Settings:
    """Read and check every variable; raise ConfigError for the first that is wrong."""
    role, scheduler_address = _role(environ)
    return Settings(
        cert_pem=_required_pem(environ, CERT_VAR, "cert"),
        key_pem=_required_pem(environ, KEY_VAR, "key"),
        ca_pem=_optional_pem(environ, CA_VAR),
        key_passphrase=intake.passphrase(environ, PASSPHRASE_VAR),
        sizing=_sizing(environ),
        dashboard_tls=_dashboard_tls(environ),
        role=role,
        scheduler_address=scheduler_address,
        scratch_dir=environ.get(SCRATCH_VAR, "").strip() or tempfile.gettempdir(),
    )


def _role(environ: Mapping[str, str]) -> tuple[str, str]:
    role = environ.get(ROLE_VAR, "").strip().lower() or "all"
    if role not in ROLES:
        raise ConfigError(
            ROLE_VAR, f"{role[:20]!r} is not all, scheduler or worker", "unset it for all"
        )
    address = environ.get(SCHEDULER_ADDRESS_VAR, "").strip()
    if role != "worker":
        if address:
            log.warning(
                "%s is ignored: only DASK_ROLE=worker connects elsewhere", SCHEDULER_ADDRESS_VAR
            )
        return role, LOCAL_SCHEDULER
    if not address:
        raise ConfigError(
            SCHEDULER_ADDRESS_VAR,
            "is not set, and DASK_ROLE=worker needs it",
            "set tls://HOST:8786",
        )
    return role, _tls_address(address)


def _tls_address(text: str) -> str:
    """tls://HOST:PORT from `HOST`, `HOST:PORT` or `tls://HOST:PORT`; any other scheme refused."""
    fix = "set it to tls://HOST:8786"
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "tls", text
    if scheme != "tls":
        raise ConfigError(SCHEDULER_ADDRESS_VAR, f"{scheme[:10]}:// is not TLS", fix)
    host, colon, port = rest.rpartition(":")
    if not colon or host.endswith(":"):  # no port given (or a bare IPv6 address)
        host, port = rest, "8786"
    if not host or any(c in host for c in " /@") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(SCHEDULER_ADDRESS_VAR, f"{text[:60]!r} is not HOST:PORT", fix)
    return f"tls://{host}:{port}"


def _required_pem(environ: Mapping[str, str], name: str, what: str) -> bytes:
    text = intake.read_secret(environ, name)
    if text is None:
        raise ConfigError(name, "is not set", PEM_FIX.format(name=name, what=what))
    return intake.pem_bytes(name, text)


def _optional_pem(environ: Mapping[str, str], name: str) -> bytes | None:
    text = intake.read_secret(environ, name)
    return None if text is None else intake.pem_bytes(name, text)


def _dashboard_tls(environ: Mapping[str, str]) -> bool:
    protocol = environ.get(DASHBOARD_VAR, "https").strip().lower()
    if protocol not in ("https", "http"):
        raise ConfigError(
            DASHBOARD_VAR, f"{protocol[:20]!r} is not https or http", "leave it unset for https"
        )
    if protocol == "http":
        log.warning("%s=http: the dashboard is served in plain HTTP", DASHBOARD_VAR)
    return protocol == "https"


def _sizing(environ: Mapping[str, str]) -> Sizing:
    # dask.system.CPU_COUNT honours the container's CPU limit (cgroups, affinity)
    from dask.system import CPU_COUNT

    workers = _count(environ, WORKERS_VAR, default=CPU_COUNT, limit=MAX_WORKERS)
    threads = _count(environ, THREADS_VAR, default=max(1, CPU_COUNT // workers), limit=MAX_THREADS)
    if workers * threads > THREADS_PER_CPU_WARNING * CPU_COUNT:
        log.warning(
            "%d workers x %d threads is over %d threads per CPU (%d CPUs): set %s or %s lower",
            workers, threads, THREADS_PER_CPU_WARNING, CPU_COUNT, WORKERS_VAR, THREADS_VAR,
        )  # fmt: skip
    memory = _memory(environ.get(MEMORY_VAR, "").strip(), workers)
    return Sizing(workers=workers, threads_per_worker=threads, memory_limit=memory)


def _count(environ: Mapping[str, str], name: str, default: int, limit: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    fix = f"set {name} to a whole number from 1 to {limit}, or leave it unset for {default}"
    if not text.isdigit() or not text.isascii():
        raise ConfigError(name, f"{text[:20]!r} is not a whole number", fix)
    value = int(text)
    if not 1 <= value <= limit:
        raise ConfigError(name, f"{value} is out of range", fix)
    return value


def _memory(text: str, workers: int) -> str:
    if not text:
        return repr(1 / workers)  # each worker an equal share of the container's limit
    from dask.utils import format_bytes, parse_bytes
    from distributed.system import MEMORY_LIMIT  # the container's limit (cgroups), or the RAM

    fix = f"set {MEMORY_VAR} to a size per worker: a number of GB like 4, or 512MiB, 2GB"
    spec = text + "GB" if _is_number(text) else text
    try:
        size = parse_bytes(spec)
    except (ValueError, TypeError):
        raise ConfigError(MEMORY_VAR, f"{text[:20]!r} is not a size", fix) from None
    if size < MIN_WORKER_MEMORY:
        raise ConfigError(
            MEMORY_VAR, f"{text[:20]!r} is below {format_bytes(MIN_WORKER_MEMORY)} a worker", fix
        )
    if size * workers > MEMORY_LIMIT:
        raise ConfigError(
            MEMORY_VAR,
            f"{workers} workers x {format_bytes(size)} is more than the container's "
            f"{format_bytes(MEMORY_LIMIT)}",
            f"set it to at most {format_bytes(MEMORY_LIMIT // workers)}, or unset it",
        )
    return str(size)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

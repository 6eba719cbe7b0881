"""Settings from the environment. The only module that reads the user's variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from entrypoint.errors import ConfigError

CERT_VAR = "DASK_CLUSTER_CERT"
KEY_VAR = "DASK_CLUSTER_KEY"
CA_VAR = "DASK_CLUSTER_CA"
WORKERS_VAR = "NUM_WORKERS"
THREADS_VAR = "THREADS_PER_WORKER"
MEMORY_VAR = "MEMORY_PER_WORKER"

MAX_PEM_BYTES = 1 << 20  # a long chain is a few KiB; anything near this is not a PEM
MAX_WORKERS = 256
MAX_THREADS = 1024
MIN_WORKER_MEMORY = 128 << 20  # below this a worker cannot even hold its own interpreter
PEM_FIX = 'pass the PEM text, e.g. -e {name}="$(cat {what}.pem)"'


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


def from_environ(environ: Mapping[str, str]) -> Settings:
    """Read and check every variable; raise ConfigError for the first that is wrong."""
    return Settings(
        cert_pem=_pem(environ, CERT_VAR, "cert"),
        key_pem=_pem(environ, KEY_VAR, "key"),
        ca_pem=_pem(environ, CA_VAR, "ca") if environ.get(CA_VAR, "").strip() else None,
        sizing=_sizing(environ),
    )


def _pem(environ: Mapping[str, str], name: str, what: str) -> bytes:
    raw = environ.get(name)
    fix = PEM_FIX.format(name=name, what=what)
    if raw is None:
        raise ConfigError(name, "is not set", fix)
    text = raw.strip().replace("\r\n", "\n")
    if not text:
        raise ConfigError(name, "is empty", fix)
    try:
        data = text.encode("utf-8")  # os.environ keeps undecodable bytes as surrogates
    except UnicodeEncodeError:
        raise ConfigError(name, "is not UTF-8 text", fix) from None
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(name, f"is {len(data)} bytes, too large for a PEM", fix)
    return data + b"\n"


def _sizing(environ: Mapping[str, str]) -> Sizing:
    # dask.system.CPU_COUNT honours the container's CPU limit (cgroups, affinity)
    from dask.system import CPU_COUNT

    workers = _count(environ, WORKERS_VAR, default=CPU_COUNT, limit=MAX_WORKERS)
    threads = _count(environ, THREADS_VAR, default=max(1, CPU_COUNT // workers), limit=MAX_THREADS)
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
    return str(size)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

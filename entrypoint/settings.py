"""Settings from the environment. The only module that reads the user's variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from entrypoint import intake
from entrypoint.contract import (
    AUTOSCALE_GROUP_VAR,
    AUTOSCALE_VAR,
    AUTOSCALE_WORKERS_VAR,
    CA_VAR,
    CERT_VAR,
    COMPUTE_API,
    COMPUTE_API_VAR,
    CRL_VAR,
    DASHBOARD_VAR,
    DRAIN_VAR,
    HTTP_CLIENT_CERT_VAR,
    KEY_VAR,
    MAX_VMS,
    MEMORY_VAR,
    METADATA_HOST,
    METADATA_HOST_VAR,
    PASSPHRASE_VAR,
    ROLE_VAR,
    SCHEDULER_ADDRESS_VAR,
    SCHEDULER_PORT,
    SCRATCH_VAR,
    SECRET_VARS,
    THREADS_VAR,
    WORKERS_VAR,
    file_var,
    vm_bounds,
)
from entrypoint.dask_config import AUTOSCALE, TLS_MIN_VERSION, lookup, overriding, variable
from entrypoint.errors import ConfigError

ROLES = ("all", "scheduler", "worker")
LOCAL_SCHEDULER = f"tls://127.0.0.1:{SCHEDULER_PORT}"

MAX_WORKERS = 256
MAX_THREADS = 1024
MIN_WORKER_MEMORY = 128 << 20  # below this a worker cannot even hold its own interpreter
EXPIRY_WARNING = timedelta(days=30)  # a certificate closer to its expiry is warned about
THREADS_PER_CPU_WARNING = 4  # more threads than this per CPU is rarely what anyone wants
# seconds a worker-only container's stop may spend moving its results to other workers: with the
# supervisor's AFTER_DRAIN (3 s) and its last second, the stop fits in docker's default 10 s
DEFAULT_DRAIN = 5.0
MAX_DRAIN = 3600.0
# a managed instance group's path: a project ID, a zone, a group name (RFC 1035, 63 at most)
GROUP_PATH = re.compile(
    r"projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/zones/[a-z]+-[a-z]+[0-9]+-[a-z]"
    r"/instanceGroupManagers/[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
)
HOST_PORT = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
PEM_FIX = 'pass the PEM text, e.g. -e {name}="$(cat {what}.pem)", or set {name}_FILE'

log = logging.getLogger("entrypoint")


@dataclass(frozen=True)
class Sizing:
    workers: int
    threads_per_worker: int
    # bytes per worker; None: each an equal share of the container's limit, which distributed
    # resolves against the cgroup limit
    memory_per_worker: int | None


@dataclass(frozen=True)
class Pems:
    """The cluster's material as given (PEM bytes; the key may still be encrypted)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes | None
    key_passphrase: bytes | None = field(default=None, repr=False)
    crl_pem: bytes | None = None


@dataclass(frozen=True)
class Autoscale:
    """AUTOSCALE and its companions: the scheduler sizes this managed instance group of worker
    VMs (entrypoint.autoscaling), and where it finds the metadata server and the Compute API."""

    minimum: int
    maximum: int
    group: str  # projects/P/zones/Z/instanceGroupManagers/G
    workers_per_vm: int
    metadata_host: str = METADATA_HOST
    compute_api: str = COMPUTE_API

    def config(self) -> dict[str, object]:
        """Its dask config keys, for the scheduler (read by the preload's autoscale)."""
        return {
            f"{AUTOSCALE}.{name.replace('_', '-')}": value
            for name, value in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True)
class Settings:
    pems: Pems
    sizing: Sizing
    # the *_FILE variables given (paths, no secret): a running container can read them again
    secret_files: dict[str, str] = field(default_factory=dict)
    dashboard_tls: bool = True
    http_client_cert: bool = True
    role: str = "all"
    scheduler_address: str = LOCAL_SCHEDULER  # where the workers connect
    drain_timeout: float = 0.0  # seconds a stop may spend moving results away (DASK_ROLE=worker)
    scratch_dir: str = field(default_factory=tempfile.gettempdir)  # as distributed falls back
    autoscale: Autoscale | None = None  # DASK_ROLE=scheduler, sizing a group of worker VMs


def from_environ(environ: Mapping[str, str]) -> Settings:
    """Read and check every variable; raise ConfigError for the first that is wrong."""
    _check_dask_variables(environ)
    role, scheduler_address = _role(environ)
    return Settings(
        pems=read_pems(environ),
        secret_files=secret_files(environ),
        sizing=_sizing(environ),
        dashboard_tls=_dashboard_tls(environ),
        http_client_cert=_http_client_cert(environ),
        role=role,
        scheduler_address=scheduler_address,
        drain_timeout=_drain_timeout(environ, role),
        scratch_dir=dask_value(environ, SCRATCH_VAR)[1] or tempfile.gettempdir(),
        autoscale=_autoscale(environ, role),
    )


def read_pems(environ: Mapping[str, str]) -> Pems:
    return Pems(
        cert_pem=_required_pem(environ, CERT_VAR, "cert"),
        key_pem=_required_pem(environ, KEY_VAR, "key"),
        ca_pem=_optional_pem(environ, CA_VAR),
        key_passphrase=intake.passphrase(environ, PASSPHRASE_VAR),
        crl_pem=_optional_pem(environ, CRL_VAR),
    )


def secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """{NAME_FILE: path} for each secret given as a file."""
    names = (file_var(name) for name in SECRET_VARS)
    return {name: environ[name].strip() for name in names if environ.get(name, "").strip()}


def dask_value(environ: Mapping[str, str], name: str) -> tuple[str, str]:
    """(the variable as the user spelled it, its value stripped) for the dask key that `name`
    (e.g. DASK_ROLE) sets, found in every spelling dask reads: DASK_role reaches dask as DASK_ROLE
    does, so it must be checked as DASK_ROLE is. (name, "") when it is not set."""
    key = name.removeprefix("DASK_").lower().replace("__", ".")
    try:
        found = lookup(environ, key)
    except ValueError as spellings:
        raise ConfigError(
            name, f"is set twice, as {str(spellings)[:120]}", "set it once, spelled " + name
        ) from None
    return (found[0], found[1].strip()) if found else (name, "")


def _role(environ: Mapping[str, str]) -> tuple[str, str]:
    role_var, role = dask_value(environ, ROLE_VAR)
    role = role.lower() or "all"
    if role not in ROLES:
        raise ConfigError(
            role_var[:60], f"{role[:20]!r} is not all, scheduler or worker", "unset it for all"
        )
    address_var, address = dask_value(environ, SCHEDULER_ADDRESS_VAR)
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
            f"set tls://HOST:{SCHEDULER_PORT}",
        )
    return role, _tls_address(address, address_var)


def _drain_timeout(environ: Mapping[str, str], role: str) -> float:
    """Seconds, with dask's units (20, 20s, 1m); only a worker-only container drains."""
    text = environ.get(DRAIN_VAR, "").strip()
    if role != "worker":
        if text:
            log.warning(
                "%s is ignored: only DASK_ROLE=worker hands results over on a stop", DRAIN_VAR
            )
        return 0.0
    if not text:
        return DEFAULT_DRAIN
    from dask.utils import parse_timedelta

    fix = f"set seconds from 0 to {MAX_DRAIN:.0f} (20, 20s, 1m), or unset it for {DEFAULT_DRAIN:g}"
    try:
        seconds = float(parse_timedelta(text, default="seconds") or 0)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError):
        raise ConfigError(DRAIN_VAR, f"{text[:20]!r} is not a duration", fix) from None
    if not 0 <= seconds <= MAX_DRAIN:
        raise ConfigError(DRAIN_VAR, f"{text[:20]!r} is out of range", fix)
    return seconds


def _autoscale(environ: Mapping[str, str], role: str) -> Autoscale | None:
    """AUTOSCALE=MIN:MAX with its group and its VMs' workers (all three, or none), for a
    container that runs the scheduler alone."""
    given = {name: environ.get(name, "").strip()
             for name in (AUTOSCALE_VAR, AUTOSCALE_GROUP_VAR, AUTOSCALE_WORKERS_VAR)}  # fmt: skip
    if not any(given.values()):
        return None
    if role != "scheduler":
        raise ConfigError(AUTOSCALE_VAR, "sizes a group of worker VMs from a scheduler-only "
                          "container", "set DASK_ROLE=scheduler, or unset AUTOSCALE*")  # fmt: skip
    for name, value in given.items():
        if not value:
            raise ConfigError(
                name, "is not set, and AUTOSCALE needs it",
                f"set all of {', '.join(given)} (gce --autoscale renders them)",
            )  # fmt: skip
    try:
        minimum, maximum = vm_bounds(given[AUTOSCALE_VAR])
    except ValueError as wrong:
        raise ConfigError(
            AUTOSCALE_VAR, f"{given[AUTOSCALE_VAR][:20]!r} is {wrong}",
            f"set MIN:MAX worker VMs, 0 <= MIN <= MAX, 1 <= MAX <= {MAX_VMS} (e.g. 1:4)",
        ) from None  # fmt: skip
    group = given[AUTOSCALE_GROUP_VAR]
    if not GROUP_PATH.fullmatch(group):
        raise ConfigError(AUTOSCALE_GROUP_VAR, f"{group[:80]!r} is not a zonal group's path",
                          "set projects/PROJECT/zones/ZONE/instanceGroupManagers/NAME")  # fmt: skip
    return Autoscale(
        minimum, maximum, group,
        workers_per_vm=_count(environ, AUTOSCALE_WORKERS_VAR, default=1, limit=MAX_WORKERS),
        metadata_host=_metadata_host(environ),
        compute_api=_compute_api(environ),
    )  # fmt: skip


def _metadata_host(environ: Mapping[str, str]) -> str:
    host = environ.get(METADATA_HOST_VAR, "").strip() or METADATA_HOST
    if not HOST_PORT.fullmatch(host):
        raise ConfigError(METADATA_HOST_VAR, f"{host[:60]!r} is not HOST or HOST:PORT",
                          f"unset it for {METADATA_HOST}, the metadata server")  # fmt: skip
    return host


def _compute_api(environ: Mapping[str, str]) -> str:
    url = environ.get(COMPUTE_API_VAR, "").strip() or COMPUTE_API
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise ConfigError(COMPUTE_API_VAR, f"{url[:60]!r} is not an http(s) URL",
                          f"unset it for {COMPUTE_API}")  # fmt: skip
    return url if url.endswith("/") else url + "/"


def _tls_address(text: str, name: str = SCHEDULER_ADDRESS_VAR) -> str:
    """tls://HOST:PORT from `HOST`, `HOST:PORT`, an IPv6 address with or without [brackets], or
    `tls://...`, as distributed writes addresses; any other scheme is refused."""
    from distributed.comm.addressing import parse_host_port, unparse_host_port

    fix = f"set it to tls://HOST:{SCHEDULER_PORT}"
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "tls", text
    if scheme != "tls":
        raise ConfigError(name[:60], f"{scheme[:10]}:// is not TLS", fix)
    try:
        host, port = (
            (rest, SCHEDULER_PORT) if _is_ipv6(rest) else parse_host_port(rest, SCHEDULER_PORT)
        )
    except ValueError:
        host, port = "", 0
    if not host or any(c in host for c in " /@") or not 0 < port < 65536:
        raise ConfigError(name[:60], f"{text[:60]!r} is not HOST:PORT", fix)
    return f"tls://{unparse_host_port(host, port)}"


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


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


def _http_client_cert(environ: Mapping[str, str]) -> bool:
    value = environ.get(HTTP_CLIENT_CERT_VAR, "required").strip().lower()
    if value not in ("required", "none"):
        raise ConfigError(
            HTTP_CLIENT_CERT_VAR,
            f"{value[:20]!r} is not required or none",
            "leave it unset: every HTTPS port then asks for a certificate from the cluster's CA",
        )
    if value == "none":
        log.warning(
            "%s=none: the dashboard and the workers' HTTPS ports answer anyone who reaches them; "
            "keep them behind your own authenticating proxy",
            HTTP_CLIENT_CERT_VAR,
        )
    return value == "required"


def _check_dask_variables(environ: Mapping[str, str]) -> None:
    """No variable may undo what the image fixes; the TLS floor is 1.2 or 1.3."""
    for name, key in overriding(environ):
        raise ConfigError(
            name[:60],
            f"would set {key}, which this image fixes to keep the cluster TLS-only",
            "unset it (see the README for the settings this image offers)",
        )
    floor_var, floor = dask_value(environ, variable(TLS_MIN_VERSION))
    if floor and floor not in ("1.2", "1.3"):
        raise ConfigError(
            floor_var[:60],
            f"{floor[:10]!r} is not 1.2 or 1.3",
            "set 1.3 for TLS 1.3 only on every port, or leave it unset for 1.2 and 1.3",
        )


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
    return Sizing(workers=workers, threads_per_worker=threads, memory_per_worker=memory)


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


def _memory(text: str, workers: int) -> int | None:
    if not text:
        return None
    from dask.utils import format_bytes, parse_bytes
    from distributed.system import MEMORY_LIMIT  # the container's limit (cgroups), or the RAM

    fix = f"set {MEMORY_VAR} to a size per worker: a number of GB like 4, or 512MiB, 2GB"
    spec = text + "GB" if _is_number(text) else text
    try:
        size = parse_bytes(spec)
    except (ValueError, TypeError, OverflowError):  # OverflowError: 1e309 is infinite
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
    return size


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

"""The dask configuration every process of the cluster gets, as DASK_* variables: the part this
image fixes (encryption, certificates, the TLS profile, its own hooks).

dask's config system reads any spelling of a key (`DASK_distributed__comm__tls__ca_file` reaches the
same key as the upper-case name; `-` and `_` are the same), so a variable that reaches a fixed key,
or a whole section holding one, is refused rather than allowed to win or lose by chance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

PREFIX = "DASK_"
# dask merges this serialized config into every process's config: it could undo any fixed key
INHERITED_CONFIG = "DASK_INTERNAL_INHERIT_CONFIG"

# Mozilla's "intermediate" TLS 1.2 suites with ECDHE key exchange only: forward secrecy and AEAD, no
# CBC, no static RSA. TLS 1.3's suites are all AEAD. The curves are set by openssl.cnf.
CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
HOOKS = "entrypoint.preload"  # the preload of every scheduler, nanny and worker
TLS = "distributed.comm.tls"
DASHBOARD_TLS = "distributed.scheduler.dashboard.tls"
HTTP_CLIENT_CERT = "dask-tls.require-http-client-cert"  # our own key: read by the hooks
CRL_FILE = "dask-tls.crl-file"  # our own key: the revocation list the hooks enforce ("" for none)
DRAIN_TIMEOUT = "dask-tls.drain-timeout"  # our own key: seconds a stop may spend draining
# our own section: the worker VMs' group the scheduler sizes (from AUTOSCALE*, never set for the
# other roles) and the autoscaler's damping (defaults: entrypoint.autoscaling.policy.DAMPING)
AUTOSCALE = "dask-tls.autoscale"
TLS_MIN_VERSION = f"{TLS}.min-version"
ENDS = ("scheduler", "worker", "client")
FIXED_KEYS = (
    "distributed.comm.require-encryption",
    f"{TLS}.ca-file",
    f"{TLS}.ciphers",
    *(f"{TLS}.{end}.{part}" for end in ENDS for part in ("cert", "key")),
    *(f"{DASHBOARD_TLS}.{part}" for part in ("cert", "key", "ca-file")),
    *(f"distributed.{node}.preload" for node in ("scheduler", "worker", "nanny")),
    HTTP_CLIENT_CERT,
    CRL_FILE,
)


def fixed_config(
    cert: str, key: str, ca: str, *, dashboard_tls: bool, http_client_cert: bool, crl: str = ""
) -> dict[str, object]:
    """Values for FIXED_KEYS: TLS everywhere from these files, our hooks in every process."""
    dashboard = {f"{DASHBOARD_TLS}.cert": cert, f"{DASHBOARD_TLS}.key": key}
    config: dict[str, object] = {
        "distributed.comm.require-encryption": True,
        f"{TLS}.ca-file": ca,
        f"{TLS}.ciphers": CIPHERS,
        **{f"{TLS}.{end}.cert": cert for end in ENDS},
        **{f"{TLS}.{end}.key": key for end in ENDS},
        # empty when the dashboard is plain HTTP: distributed then serves it without TLS
        **(dashboard if dashboard_tls else dict.fromkeys(dashboard, "")),
        f"{DASHBOARD_TLS}.ca-file": ca,
        **{f"distributed.{node}.preload": [HOOKS] for node in ("scheduler", "worker", "nanny")},
        HTTP_CLIENT_CERT: http_client_cert,
        CRL_FILE: crl,
    }
    assert set(config) == set(FIXED_KEYS)
    return config


def as_environment(config: Mapping[str, object]) -> dict[str, str]:
    """{"a.b-c": 1} -> {"DASK_A__B_C": "1"}: what dask's collect_env reads back as that config."""
    return {variable(key): str(value) for key, value in config.items()}


def variable(key: str) -> str:
    return PREFIX + key.replace(".", "__").replace("-", "_").upper()


def overriding(environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(variable, fixed key) for each variable that would set a fixed key, in any spelling, or a
    section holding one (e.g. DASK_DISTRIBUTED__COMM__TLS='{...}')."""
    fixed = {_path(key): key for key in FIXED_KEYS}
    for name in environ:
        if name == INHERITED_CONFIG:
            yield name, "the whole configuration"
        elif name.startswith(PREFIX):
            path = _path(name[len(PREFIX) :].replace("__", "."))
            hit = next((key for p, key in fixed.items() if p[: len(path)] == path), None)
            if hit:
                yield name, hit


def lookup(environ: Mapping[str, str], key: str) -> tuple[str, str] | None:
    """(variable, value) of the one variable that sets `key`, in any spelling dask reads
    (`DASK_ROLE`, `DASK_role`, `DASK_Distributed__Comm__Tls__Min-Version`...); None when none
    does. ValueError names them when two spellings are set: which one dask takes is not ours to
    guess."""
    wanted = _path(key)
    found = [
        (name, value)
        for name, value in environ.items()
        if name.startswith(PREFIX) and _path(name[len(PREFIX) :].replace("__", ".")) == wanted
    ]
    if len(found) > 1:
        raise ValueError(" and ".join(sorted(name for name, _ in found)))
    return found[0] if found else None


def _path(key: str) -> tuple[str, ...]:
    return tuple(key.lower().replace("-", "_").split("."))

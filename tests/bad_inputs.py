"""Bad inputs, each with the variable and the words its refusal must carry. Shared by the process
tests (all rows) and the container tests (a subset)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from entrypoint.certs import issue, new_key
from tests.material import ClusterMaterial

Env = dict[str, str]


@dataclass(frozen=True)
class BadInput:
    id: str
    env: Callable[[ClusterMaterial], Env]
    says: str  # the start of the one-line message


def _with(**changes: str | None) -> Callable[[ClusterMaterial], Env]:
    def env(material: ClusterMaterial) -> Env:
        base: dict[str, str | None] = {**material.ca_env(), **changes}
        return {k: v for k, v in base.items() if v is not None}

    return env


def _pair(make: Callable[[], tuple[bytes, bytes]]) -> Callable[[ClusterMaterial], Env]:
    def env(material: ClusterMaterial) -> Env:
        cert, key = make()
        return {"DASK_CLUSTER_CERT": cert.decode(), "DASK_CLUSTER_KEY": key.decode()}

    return env


def _expired() -> tuple[bytes, bytes]:
    old = issue("old", ca=True, not_before=datetime.now(UTC) - timedelta(days=9), days=2)
    return old.cert_pem, old.key_pem


def _not_yet_valid() -> tuple[bytes, bytes]:
    new = issue("new", ca=True, not_before=datetime.now(UTC) + timedelta(days=1))
    return new.cert_pem, new.key_pem


def _weak_rsa() -> tuple[bytes, bytes]:
    weak = issue("weak", ca=True, key=new_key("rsa1024"))
    return weak.cert_pem, weak.key_pem


BAD_INPUTS = [
    BadInput("cert-unset", _with(DASK_CLUSTER_CERT=None), "DASK_CLUSTER_CERT: is not set"),
    BadInput("key-unset", _with(DASK_CLUSTER_KEY=None), "DASK_CLUSTER_KEY: is not set"),
    BadInput("key-empty", _with(DASK_CLUSTER_KEY=" "), "DASK_CLUSTER_KEY: is empty"),
    BadInput("cert-garbage", _with(DASK_CLUSTER_CERT="hello"), "DASK_CLUSTER_CERT: is not a PEM"),
    BadInput(
        "key-truncated",
        lambda m: {**m.ca_env(), "DASK_CLUSTER_KEY": m.ca_env()["DASK_CLUSTER_KEY"][:90]},
        "DASK_CLUSTER_KEY: is not a PEM private key",
    ),
    BadInput(
        "swapped",
        lambda m: {**m.ca_env(), "DASK_CLUSTER_CERT": m.ca_env()["DASK_CLUSTER_KEY"]},
        "DASK_CLUSTER_CERT: holds a private key",
    ),
    BadInput(
        "key-of-another-cert",
        lambda m: {**m.ca_env(), "DASK_CLUSTER_KEY": m.client.key_pem.decode()},
        "DASK_CLUSTER_KEY: the key does not match",
    ),
    BadInput("expired", _pair(_expired), "DASK_CLUSTER_CERT: the certificate expired"),
    BadInput(
        "not-yet-valid",
        _pair(_not_yet_valid),
        "DASK_CLUSTER_CERT: the certificate is not valid before",
    ),
    BadInput(
        "other-ca",
        lambda m: {
            **m.ca_env(),
            "DASK_CLUSTER_CERT": m.intruder.cert_pem.decode(),
            "DASK_CLUSTER_KEY": m.intruder.key_pem.decode(),
        },
        "DASK_CLUSTER_CERT: the certificate was not issued by the CA",
    ),
    BadInput(
        "ca-not-a-ca",
        lambda m: {**m.ca_env(), "DASK_CLUSTER_CA": m.client.cert_pem.decode()},
        "DASK_CLUSTER_CA: CN=client is not a CA",
    ),
    BadInput(
        "ca-missing", _with(DASK_CLUSTER_CA=None), "DASK_CLUSTER_CA: is not set and the certificate"
    ),
    BadInput("rsa-1024", _pair(_weak_rsa), "DASK_CLUSTER_CERT: the RSA key has 1024 bits"),
    BadInput("workers-zero", _with(NUM_WORKERS="0"), "NUM_WORKERS: 0 is out of range"),
    BadInput(
        "threads-negative",
        _with(THREADS_PER_WORKER="-1"),
        "THREADS_PER_WORKER: '-1' is not a whole",
    ),
    BadInput(
        "memory-words",
        _with(MEMORY_PER_WORKER="plenty"),
        "MEMORY_PER_WORKER: 'plenty' is not a size",
    ),
]
BY_ID = {bad.id: bad for bad in BAD_INPUTS}

"""The fixed dask configuration, and the variables that would undo it in any spelling."""

from __future__ import annotations

import dask.config
import pytest

from entrypoint.dask_config import (
    FIXED_KEYS,
    INHERITED_CONFIG,
    as_environment,
    fixed_config,
    overriding,
)


def fixed(dashboard_tls: bool = True, http_client_cert: bool = True) -> dict[str, object]:
    return fixed_config(
        "/p/cert.pem", "/p/key.pem", "/p/ca.pem",
        dashboard_tls=dashboard_tls, http_client_cert=http_client_cert, crl="/p/crl.pem",
    )  # fmt: skip


def test_dask_reads_the_environment_back_as_the_fixed_config() -> None:
    """Every fixed key, written as variables, is what dask's own config system reads back."""
    config = fixed()
    read = dask.config.collect_env(as_environment(config))
    for key, value in config.items():
        assert dask.config.get(key, config=read) == value, key


@pytest.mark.parametrize(
    "name",
    [
        "DASK_distributed__scheduler__dashboard__tls__cert",
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION",
        "DASK_Distributed__Comm__Require-Encryption",
        "DASK_distributed__comm__tls__client__key",
        "DASK_DISTRIBUTED__COMM__TLS__CIPHERS",
        "DASK_DISTRIBUTED__COMM__TLS",
        "DASK_DISTRIBUTED__COMM",
        "DASK_DISTRIBUTED",
        "DASK_distributed__worker__preload",
        INHERITED_CONFIG,
    ],
)
def test_any_spelling_of_a_fixed_key_or_its_section_is_caught(name: str) -> None:
    """Lower or mixed case, `-` for `_`, a whole section: each is named with the key it reaches."""
    assert [found for found, _ in overriding({name: "x"})] == [name]


@pytest.mark.parametrize(
    "name",
    [
        "DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION",
        "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET",
        "DASK_TEMPORARY_DIRECTORY",
        "DASK_CLUSTER_CERT",
        "dask_distributed__comm__require_encryption",  # not read by dask: its prefix is DASK_
    ],
)
def test_other_variables_pass(name: str) -> None:
    """Settings the image does not fix stay the user's."""
    assert list(overriding({name: "x"})) == []


def test_fixed_keys_are_exactly_what_is_set() -> None:
    """The refusal list and the values set cannot drift apart."""
    assert set(fixed()) == set(FIXED_KEYS) == set(fixed(dashboard_tls=False))

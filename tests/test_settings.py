"""Settings parsing: sizes, defaults and the message each wrong value gets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dask.system import CPU_COUNT

from entrypoint.cluster import Plan
from entrypoint.contract import PLAN_FILE, SCHEDULER_PORT
from entrypoint.errors import EXIT_CONFIG, ConfigError, StartupError
from entrypoint.settings import DEFAULT_DRAIN, from_environ

CERT_TEXT = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
PEMS = {
    "DASK_CLUSTER_CERT": CERT_TEXT,
    "DASK_CLUSTER_KEY": CERT_TEXT.replace("CERTIFICATE", "PRIVATE KEY"),
}


def test_defaults_share_the_container_among_one_worker_per_cpu() -> None:
    """Unset sizes give one worker per CPU of the container, each an equal share of its memory."""
    sizing = from_environ(PEMS).sizing
    assert sizing.workers == CPU_COUNT
    assert sizing.threads_per_worker == 1
    assert sizing.memory_per_worker is None  # each an equal share of the container's


def test_seed_variables_are_read_as_the_seed_meant_them() -> None:
    """A bare MEMORY_PER_WORKER is GB, as in the seed's `${memory_per_worker}GB`."""
    env = {**PEMS, "NUM_WORKERS": "4", "THREADS_PER_WORKER": "2", "MEMORY_PER_WORKER": "4"}
    sizing = from_environ(env).sizing
    assert (sizing.workers, sizing.threads_per_worker, sizing.memory_per_worker) == (
        4,
        2,
        4 * 10**9,
    )


@pytest.mark.parametrize(
    ("text", "size"), [("512MiB", 536870912), ("2GB", 2 * 10**9), ("1.5", 1.5e9)]
)
def test_memory_takes_units(text: str, size: float) -> None:
    """Units go through dask's parse_bytes."""
    assert from_environ({**PEMS, "MEMORY_PER_WORKER": text}).sizing.memory_per_worker == size


def test_threads_default_to_cpus_per_worker() -> None:
    """With one worker, its threads default to every CPU of the container."""
    assert from_environ({**PEMS, "NUM_WORKERS": "1"}).sizing.threads_per_worker == CPU_COUNT


WORKER = {**PEMS, "DASK_ROLE": "worker", "DASK_SCHEDULER_ADDRESS": "scheduler"}


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        (WORKER, DEFAULT_DRAIN),
        ({**WORKER, "DRAIN_TIMEOUT": "20"}, 20.0),
        ({**WORKER, "DRAIN_TIMEOUT": "1m"}, 60.0),
        ({**WORKER, "DRAIN_TIMEOUT": "0"}, 0.0),
        (PEMS, 0.0),
        ({**PEMS, "DASK_ROLE": "scheduler"}, 0.0),
    ],
)
def test_only_a_worker_only_container_drains(env: dict[str, str], seconds: float) -> None:
    """DRAIN_TIMEOUT takes dask's units and defaults to DEFAULT_DRAIN for DASK_ROLE=worker; with
    the scheduler in the container there is nowhere to move results: no drain."""
    assert from_environ(env).drain_timeout == seconds


def test_drain_timeout_is_ignored_with_a_warning_where_nothing_drains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given to a container that runs the scheduler, DRAIN_TIMEOUT is named in a warning."""
    assert from_environ({**PEMS, "DRAIN_TIMEOUT": "20"}).drain_timeout == 0.0
    assert "DRAIN_TIMEOUT is ignored: only DASK_ROLE=worker" in caplog.text


def test_key_never_in_repr() -> None:
    """The key and its passphrase stay out of the settings' repr."""
    settings = from_environ({**PEMS, "DASK_CLUSTER_KEY_PASSPHRASE": "hunter2"})
    assert "PRIVATE" not in repr(settings) and "hunter2" not in repr(settings)


def test_too_many_threads_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Threads far beyond the CPUs start anyway, with a warning that says what to lower."""
    sizing = from_environ(
        {**PEMS, "NUM_WORKERS": "2", "THREADS_PER_WORKER": str(8 * CPU_COUNT)}
    ).sizing
    assert sizing.threads_per_worker == 8 * CPU_COUNT
    assert "threads per CPU" in caplog.text


def test_dashboard_is_https_unless_http_is_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    """Plain HTTP for the dashboard only when asked for, and then with a warning."""
    assert from_environ(PEMS).dashboard_tls
    assert not from_environ({**PEMS, "DASHBOARD_PROTOCOL": "HTTP"}).dashboard_tls
    assert "plain HTTP" in caplog.text


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        ({"DASK_CLUSTER_KEY": CERT_TEXT}, "DASK_CLUSTER_CERT", "is not set"),
        ({"DASK_CLUSTER_CERT": CERT_TEXT}, "DASK_CLUSTER_KEY", "is not set"),
        ({**PEMS, "DASK_CLUSTER_KEY": "  \n"}, "DASK_CLUSTER_KEY", "is empty"),
        ({**PEMS, "DASK_CLUSTER_CERT": "x" * (2 << 20)}, "DASK_CLUSTER_CERT", "too large"),
        ({**PEMS, "DASK_CLUSTER_CERT": "caf\udce9"}, "DASK_CLUSTER_CERT", "not UTF-8"),
        (
            {**PEMS, "MEMORY_PER_WORKER": "1000000"},
            "MEMORY_PER_WORKER",
            "is more than the container",
        ),
        ({**PEMS, "DASHBOARD_PROTOCOL": "ws"}, "DASHBOARD_PROTOCOL", "is not https or http"),
        ({**PEMS, "NUM_WORKERS": "0"}, "NUM_WORKERS", "out of range"),
        ({**PEMS, "NUM_WORKERS": "-2"}, "NUM_WORKERS", "not a whole number"),
        ({**PEMS, "NUM_WORKERS": "two"}, "NUM_WORKERS", "not a whole number"),
        ({**PEMS, "NUM_WORKERS": "100000"}, "NUM_WORKERS", "out of range"),
        ({**PEMS, "THREADS_PER_WORKER": "1.5"}, "THREADS_PER_WORKER", "not a whole number"),
        ({**PEMS, "MEMORY_PER_WORKER": "lots"}, "MEMORY_PER_WORKER", "not a size"),
        ({**PEMS, "MEMORY_PER_WORKER": "0"}, "MEMORY_PER_WORKER", "is below"),
        ({**PEMS, "MEMORY_PER_WORKER": "-4"}, "MEMORY_PER_WORKER", "is below"),
        ({**PEMS, "MEMORY_PER_WORKER": "1MB"}, "MEMORY_PER_WORKER", "is below"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(
    env: dict[str, str], variable: str, says: str
) -> None:
    """Each wrong value raises one ConfigError naming the variable, the problem and a fix."""
    with pytest.raises(ConfigError) as caught:
        from_environ(env)
    message = str(caught.value)
    assert message.startswith(f"{variable}: ") and says in message
    assert "; " in message and "\n" not in message
    assert caught.value.exit_code == EXIT_CONFIG


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("scheduler", f"tls://scheduler:{SCHEDULER_PORT}"),
        ("scheduler:9000", "tls://scheduler:9000"),
        (f"tls://10.0.0.5:{SCHEDULER_PORT}", f"tls://10.0.0.5:{SCHEDULER_PORT}"),
        ("::1", f"tls://[::1]:{SCHEDULER_PORT}"),
        ("[fe80::1]:9000", "tls://[fe80::1]:9000"),
    ],
)
def test_scheduler_address_is_written_as_distributed_reads_it(given: str, address: str) -> None:
    """HOST, HOST:PORT, a bare or bracketed IPv6 address: a tls:// address distributed can parse."""
    env = {**PEMS, "DASK_ROLE": "worker", "DASK_SCHEDULER_ADDRESS": given}
    assert from_environ(env).scheduler_address == address


def test_a_plan_of_another_version_is_refused(tmp_path: Path) -> None:
    """plan.json carries its version: one written by another version of the image is refused."""
    plan = Plan.of(tmp_path, from_environ(PEMS), datetime.now(UTC))
    (tmp_path / PLAN_FILE).write_bytes(plan.to_json())
    assert Plan.load(tmp_path) == plan
    (tmp_path / PLAN_FILE).write_text(
        plan.to_json().decode().replace('"version": 1', '"version": 0')
    )
    with pytest.raises(StartupError, match="of version 0, not 1"):
        Plan.load(tmp_path)

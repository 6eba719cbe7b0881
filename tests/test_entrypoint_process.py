"""The entrypoint as a process: every bad input exits 78 at once with one clean line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint.errors import EXIT_CONFIG
from entrypoint.private_files import private_dir
from tests.bad_inputs import BAD_INPUTS, BadInput
from tests.material import ClusterMaterial


def run_entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoint", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).parents[1],
    )


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda bad: bad.id)
def test_bad_input_is_refused_cleanly(
    bad: BadInput, material: ClusterMaterial, tmp_path: Path
) -> None:
    """Exit 78 within 2 s; one line naming the variable; no secret text; nothing written."""
    assert not private_dir().exists()
    env = bad.env(material, tmp_path)
    started = time.monotonic()
    result = run_entrypoint(env)
    elapsed = time.monotonic() - started
    assert result.returncode == EXIT_CONFIG, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == ""
    assert bad.says_for(tmp_path) in lines[0]
    assert not any(fragment in result.stderr for fragment in material.secret_fragments())
    secrets = [
        v for k, v in env.items() if k.startswith("DASK_CLUSTER_") and not k.endswith("_FILE")
    ]
    assert not any(len(value) > 40 and value[20:40] in result.stderr for value in secrets)
    assert elapsed < 2.0
    assert not private_dir().exists()


def test_usage() -> None:
    """--help prints the variables and exits 0; any other argument is a usage error."""
    assert "DASK_CLUSTER_CERT" in run_entrypoint({}, "--help").stdout
    assert run_entrypoint({}, "scheduler").returncode == 64


def test_there_are_at_least_30_bad_inputs() -> None:
    """The table covers at least 30 distinct mistakes."""
    assert len(BAD_INPUTS) >= 30

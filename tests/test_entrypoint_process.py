"""The entrypoint as a process: a bad input of each kind exits 78 at once with one clean line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.errors import EXIT_CONFIG
from entrypoint.private_files import private_dir
from tests.bad_inputs import BadInput, first_of_each_kind, leaks
from tests.material import ClusterMaterial

# Only a hang takes this long: a refusal takes 0.2 to 0.8 s here (dask's and distributed's
# imports), and 2.6 s was seen under a load of 15 on 2 cores.
HANG = 20  # seconds


def run_entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoint", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=HANG,
        cwd=Path(__file__).parents[1],
    )


@pytest.mark.parametrize("bad", first_of_each_kind(), ids=lambda bad: bad.id)
def test_bad_input_is_refused_cleanly(
    bad: BadInput, material: ClusterMaterial, tmp_path: Path
) -> None:
    """Exit 78 at once; one line naming the variable; nothing on stdout, no secret text, nothing
    written."""
    assert not private_dir().exists()
    env = bad.env(material, tmp_path)
    result = run_entrypoint(env)
    assert result.returncode == EXIT_CONFIG, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == ""
    assert bad.says_for(tmp_path) in lines[0]
    assert leaks(result.stderr, material, env) == []
    assert not private_dir().exists()


def test_usage() -> None:
    """--help prints the variables and exits 0; any other argument is a usage error."""
    assert "DASK_CLUSTER_CERT" in run_entrypoint({}, "--help").stdout
    assert run_entrypoint({}, "scheduler").returncode == 64

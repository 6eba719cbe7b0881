"""A client environment made by `make client`, and workloads (tests/workloads.py) run in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.containers import Container

ROOT = Path(__file__).parents[1]
# the poetry `make` installed for this checkout (Makefile: POETRY_HOME); copies use it too
POETRY_HOME = ROOT / "tools" / ".poetry"
MAKE_TIMEOUT = 900  # a cold build and a cold pip cache, on a busy machine


def copy_of_project(destination: Path) -> Path:
    """The tracked files of this checkout, as a fresh clone would have them, with their times:
    make in the copy sees the shared tools/.poetry as up to date, as it is here."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if not (ROOT / name).exists():  # deleted in the worktree, not yet committed
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return destination


def make(project: Path, *args: str) -> str:
    """`make ARGS` in `project`; fails with the end of its output."""
    result = subprocess.run(
        ["make", f"POETRY_HOME={POETRY_HOME}", *args],
        cwd=project, capture_output=True, text=True, timeout=MAKE_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def make_client(project: Path, image: str, venv: Path, certs: Path) -> Path:
    """`make client` for `image` with the certificates in `certs`; the environment's python."""
    make(project, "client", f"IMAGE={image}", f"CLIENT_VENV={venv}", f"CERTS={certs}")
    return venv / "bin" / "python"


def sibling_tag(image: str, suffix: str) -> str:
    """dask-tls:dev -> dask-tls:dev-SUFFIX: an image of this run's own, beside the one tested."""
    name, _, tag = image.partition(":")
    return f"{name}:{tag or 'latest'}-{suffix}"


def cluster_env(certs: Path) -> dict[str, str]:
    """The container's variables for the set `certs new` wrote into `certs`."""
    return {
        f"DASK_CLUSTER_{name}": (certs / file).read_text()
        for name, file in (("CERT", "cluster.pem"), ("KEY", "cluster-key.pem"), ("CA", "ca.pem"))
    }


def run_workload(
    python: Path, cluster: Container, name: str, *args: str, timeout: float = 300
) -> dict[str, Any]:
    """Run one workload in the client environment against `cluster`; its JSON result."""
    result = subprocess.run(
        [str(python), "-m", "tests.workloads", cluster.address, name, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("DASK_")},
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stderr[-4000:]}\ncluster logs:\n{cluster.logs()}"
    found: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return found

"""The user's own packages, as the README says: in a copy of this project, `poetry add --group
cluster` a real PyPI package the image lacks and one of the user's folders (a path dependency
under packages/), `make build`, `make client`; both import inside a task on the cluster and in
the client environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client_env import (
    POETRY_HOME,
    ROOT,
    cluster_env,
    make,
    make_client,
    run_workload,
    sibling_tag,
)
from tests.containers import Container, docker

pytestmark = [pytest.mark.container, pytest.mark.slow]
PYPI_PACKAGE = "humanize"  # small, pure Python, in no group of poetry.lock
LOCAL_PACKAGE = "greeting"
PIP_INDEX = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"
LOCAL_FILES = {
    "pyproject.toml": f"""\
[project]
name = "{LOCAL_PACKAGE}"
version = "0.1.0"

[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
""",
    f"{LOCAL_PACKAGE}/__init__.py": "def hello(name: str) -> str:\n    return f'hello {name}'\n",
}


def copy_of_project(destination: Path) -> Path:
    """The tracked files of this checkout, as a fresh clone would have them."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
        target.chmod((ROOT / name).stat().st_mode)
    return destination


def poetry(project: Path, *args: str) -> None:
    # as the Makefile does: pip's own default index, for registries without PyPI's JSON API
    mirror = subprocess.run(
        [sys.executable, "-c", PIP_INDEX], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = subprocess.run(
        [POETRY_HOME / "bin" / "poetry", *args], cwd=project, capture_output=True, text=True,
        timeout=600,
        env={**os.environ, "POETRY_PYPI_MIRROR_URL": mirror},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_of_project(tmp_path_factory.mktemp("user-project"))
    for name, text in LOCAL_FILES.items():
        path = project / "packages" / LOCAL_PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    poetry(project, "add", "--lock", "--group", "cluster", PYPI_PACKAGE)
    poetry(project, "add", "--lock", "--group", "cluster", f"./packages/{LOCAL_PACKAGE}")
    return project


@pytest.fixture(scope="module")
def user_image(image: str, user_project: Path) -> Iterator[str]:
    tag = sibling_tag(image, "user")
    make(user_project, "build", f"IMAGE={tag}")
    try:
        yield tag
    finally:
        docker("rmi", tag, check=False)


def test_own_packages_import_in_a_task_and_in_the_client(
    user_project: Path, user_image: str, client_certs: Path, tmp_path: Path
) -> None:
    """The PyPI package and the local one import inside a task on the cluster (from the image's
    virtualenv) and in the copy's `make client` environment, which still matches the image."""
    python = make_client(user_project, user_image, tmp_path / "venv", client_certs)
    container = Container(user_image, {**cluster_env(client_certs), "NUM_WORKERS": "1"})
    try:
        container.wait_healthy()
        found = run_workload(python, container, "imports", PYPI_PACKAGE, LOCAL_PACKAGE)
        versions = run_workload(python, container, "versions")
    finally:
        container.remove()
    for where in (found["cluster"], found["client"]):
        assert set(where) == {PYPI_PACKAGE, LOCAL_PACKAGE}
    assert all(file.startswith("/opt/venv/") for file in found["cluster"].values())
    assert all(file.startswith(str(tmp_path / "venv")) for file in found["client"].values())
    assert versions["warnings"] == []

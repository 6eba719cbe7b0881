"""What the build and `make` install, and from where: poetry and its plugins from a locked list
with hashes, the user's own folders built by the lock's setuptools only, the public base image
pinned by digest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.client_env import POETRY_HOME, ROOT

POETRY = POETRY_HOME / "bin" / "poetry"
POETRY_LOCKED = ROOT / "tools" / "poetry" / "requirements.txt"
INSTALL_LOCKED = ROOT / "docker" / "install-locked.sh"
DIGEST = re.compile(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}")
PIP_INDEX = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"


def run(*command: str | Path, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, **env},
    )  # fmt: skip


def entries(requirements: str) -> dict[str, list[str]]:
    """`name==version` of each entry of an exported requirements file, and its hashes."""
    found: dict[str, list[str]] = {}
    for entry in re.split(r"\n(?=\S)", requirements.strip()):
        pin = entry.split(" ;", 1)[0].split()[0]
        found[pin] = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
    return found


def test_the_poetry_list_is_its_lock_exported_with_a_hash_for_every_entry() -> None:
    """tools/poetry/requirements.txt is what `poetry export` makes of tools/poetry/poetry.lock
    today, pins poetry and both plugins at the versions asked for, and every entry has hashes."""
    exported = run(POETRY, "export", "--directory", "tools/poetry", "--format", "requirements.txt")
    assert exported.returncode == 0, exported.stderr
    committed = POETRY_LOCKED.read_text()
    assert exported.stdout.strip() == committed.strip(), "run `make poetry-lock`"
    pins = entries(committed)
    wanted = tomllib.loads((ROOT / "tools" / "poetry" / "pyproject.toml").read_text())
    for dependency in wanted["project"]["dependencies"]:
        name, version = re.fullmatch(r"(\S+) \(==(\S+)\)", dependency).groups()  # type: ignore[union-attr]
        assert f"{name}=={version}" in pins
    assert all(pins.values()) and len(pins) > 40


def test_make_and_the_image_install_poetry_from_that_list_only() -> None:
    """make's recipe for tools/.poetry and the Dockerfile's poetry stage install it with
    --require-hashes from the list, and name no package of their own."""
    recipe = run("make", "-n", "-B", "tools/.poetry/bin/poetry").stdout.replace("\\\n", " ")
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for text, path in ((recipe, "tools/poetry/requirements.txt"),
                       (dockerfile, "/src/poetry-requirements.txt")):  # fmt: skip
        [install] = re.findall(r"pip install[^\n;]*", text)
        assert "--require-hashes" in install and "--no-deps" in install
        assert install.split()[-1] == path and "==" not in install, install
    assert "COPY tools/poetry/requirements.txt /src/poetry-requirements.txt" in dockerfile


def test_the_public_base_image_is_pinned_by_digest_and_make_build_knows_it(
    tmp_path: Path,
) -> None:
    """The Dockerfile's default base is the slim image by digest; docker/base-image.sh offers
    exactly that image to an engine that has it."""
    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert DIGEST.fullmatch(default)
    calls = tmp_path / "calls"
    stand_in = tmp_path / "docker"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')  # every image is "there"
    stand_in.chmod(0o755)
    result = run(ROOT / "docker" / "base-image.sh", DOCKER=str(stand_in))
    assert result.stdout.strip() == default, result.stderr
    assert calls.read_text().splitlines() == [f"image inspect {default}"]


LOCAL_PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"

[build-system]
requires = ["{backend}"]
build-backend = "{backend}.build"
"""


@pytest.fixture(scope="module")
def mirror() -> str:
    return run(sys.executable, "-c", PIP_INDEX).stdout.strip()


def build_setuptools() -> str:
    """The setuptools version pyproject.toml's `build` group pins."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(project["tool"]["poetry"]["group"]["build"]["dependencies"]["setuptools"])[2:]


def locked_version(name: str) -> str:
    """The version poetry.lock holds of `name`: a project of the test's own, resolved quickly."""
    packages = tomllib.loads((ROOT / "poetry.lock").read_text())["package"]
    [version] = [package["version"] for package in packages if package["name"] == name]
    return str(version)


def project_with_folder(root: Path, backend: str, mirror: str) -> Path:
    """A project with the lock's build group and one folder under packages/ in `cluster`,
    locked; its folder's build-system is `backend` ("setuptools" or "hatchling")."""
    project = root / backend
    folder = project / "packages" / "mine"
    (folder / "mine").mkdir(parents=True)
    (folder / "mine" / "__init__.py").write_text("ANSWER = 42\n")
    text = LOCAL_PYPROJECT.format(name="mine", backend=backend)
    if backend == "setuptools":
        text = text.replace("setuptools.build", "setuptools.build_meta")
    (folder / "pyproject.toml").write_text(text)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0.1.0"\nrequires-python = ">=3.11,<3.12"\n'
        f'dependencies = ["toolz (=={locked_version("toolz")})"]\n'
        "[tool.poetry]\npackage-mode = false\n"
        '[tool.poetry.group.cluster.dependencies]\nmine = { path = "packages/mine" }\n'
        f'[tool.poetry.group.build.dependencies]\nsetuptools = "=={build_setuptools()}"\n'
    )
    locked = run(POETRY, "lock", cwd=project, POETRY_PYPI_MIRROR_URL=mirror)
    assert locked.returncode == 0, locked.stdout + locked.stderr
    return project


def install(project: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """install-locked.sh of `project`'s main and cluster groups into a new venv; pip's output in
    full (it says when it sets up a build environment)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    return run(INSTALL_LOCKED, POETRY, project, venv, "cluster", PIP_QUIET="0")


@pytest.mark.system
def test_a_folder_of_yours_is_built_by_the_locked_setuptools_with_nothing_downloaded(
    tmp_path: Path, mirror: str
) -> None:
    """A setuptools folder installs with no build isolation (pip sets up no build environment,
    so fetches no build tool); the setuptools that built it is the lock's, hash-checked."""
    result = install(project_with_folder(tmp_path, "setuptools", mirror), tmp_path / "venv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Installing build dependencies" not in result.stdout
    python = str(tmp_path / "venv" / "bin" / "python")
    imported = run(python, "-c", "import mine, setuptools as s; print(mine.ANSWER, s.__version__)")
    assert imported.stdout.split() == ["42", build_setuptools()], imported.stderr


@pytest.mark.system
def test_a_folder_with_another_build_backend_is_refused_in_one_line(
    tmp_path: Path, mirror: str
) -> None:
    """A folder built by hatchling, which no lock holds: pip may not fetch it, so the install
    fails and one line says how to build the folder; hatchling is nowhere in the venv."""
    result = install(project_with_folder(tmp_path, "hatchling", mirror), tmp_path / "venv")
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "install-locked.sh" in line]
    assert 'give it build-backend = "setuptools.build_meta"' in line
    assert not list((tmp_path / "venv").glob("lib/python*/site-packages/hatchling"))

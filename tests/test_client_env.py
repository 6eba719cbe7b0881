"""`make client` picks an interpreter of the image's Python version: another minor version is
refused in one line; another patch release is used, with one warning line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.client_env import MAKE_TIMEOUT, ROOT
from tests.containers import docker

pytestmark = [pytest.mark.container, pytest.mark.slow]
PYENV = Path.home() / ".pyenv" / "versions"
VERSION = "import platform; print(platform.python_version())"


def image_python(image: str) -> str:
    return docker("run", "--rm", "--entrypoint", "python", image, "-c", VERSION).stdout.strip()


def interpreter(want_minor: str, same: bool, avoid: str) -> Path:
    """A pyenv Python of `want_minor` (same=True) or of another minor, never version `avoid`."""
    for candidate in sorted(PYENV.glob("*/bin/python")):
        version = candidate.parts[-3]
        if version != avoid and (version.rsplit(".", 1)[0] == want_minor) == same:
            return candidate
    pytest.fail(f"no pyenv Python {'' if same else 'other than '}{want_minor} in {PYENV}")


def make_client(image: str, python: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "client", f"IMAGE={image}", f"PYTHON={python}", f"CLIENT_VENV={venv}",
         f"CERTS={venv.parent}"],
        cwd=ROOT, capture_output=True, text=True, timeout=MAKE_TIMEOUT,
    )  # fmt: skip


def test_another_minor_version_is_refused(image: str, tmp_path: Path) -> None:
    """PYTHON=a 3.12 (or any other minor) for a 3.11 image: one line naming both, no venv."""
    wanted = image_python(image)
    other = interpreter(wanted.rsplit(".", 1)[0], same=False, avoid=wanted)
    result = make_client(image, other, tmp_path / "venv")
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if "Python" in line]
    assert line.startswith(f"no Python {wanted.rsplit('.', 1)[0]} found (the image runs {wanted}")
    assert not (tmp_path / "venv").exists()


def test_another_patch_release_is_used_with_one_warning(
    image: str, client_certs: Path, tmp_path: Path
) -> None:
    """PYTHON=3.11.x with another x: the environment is made on it, and one warning line says
    get_versions will flag the difference."""
    wanted = image_python(image)
    patch = interpreter(wanted.rsplit(".", 1)[0], same=True, avoid=wanted)
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (tmp_path / name).write_bytes((client_certs / name).read_bytes())
    result = make_client(image, patch, tmp_path / "venv")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "get_versions(check=True) will flag" in warnings[0]
    made = tmp_path / "venv" / "bin" / "python"
    version = subprocess.run(
        [str(made), "-c", VERSION], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == patch.parts[-3] != wanted

"""The two commands on a bare machine: `make unit` needs make and Python only; `make test` first
finds the system tools it needs (docker/system-tools.sh), installs them as root on Debian, and
otherwise stops at once with one line naming them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client_env import ROOT
from tests.containers import DOCKER, docker

SCRIPT = ROOT / "docker" / "system-tools.sh"
PACKAGES = ["docker.io", "debootstrap", "docker-compose", "cloud-init", "chromium",
            "libnss3-tools", "git"]  # fmt: skip
TOOLS = ["docker", "debootstrap", "docker-compose", "cloud-init", "chromium", "pk12util",
         "certutil", "git"]  # fmt: skip
# A stand-in for a command: records its name and arguments in $CALLS and succeeds.
STAND_IN = """#!/bin/sh
echo "${0##*/} $*" >> "$CALLS"
exit 0
"""


def stand_ins(directory: Path, names: list[str], uid: int) -> Path:
    """A PATH directory holding stand-ins for `names` and `id -u` answering `uid`."""
    directory.mkdir()
    for name in names:
        (directory / name).write_text(STAND_IN)
        (directory / name).chmod(0o755)
    (directory / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (directory / "id").chmod(0o755)
    return directory


def pyenv(home: Path, *versions: str) -> Path:
    """A HOME whose ~/.pyenv holds (stand-ins for) these Python versions."""
    for version in versions:
        python = home / ".pyenv" / "versions" / version / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text("#!/bin/sh\n")
        python.chmod(0o755)
        (python.parent / "python3").symlink_to(python)
    return home


def system_tools(
    path: Path, calls: Path, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    home = home or pyenv(calls.parent / "home", "3.13.0", "3.11.7")
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
        env={"PATH": str(path), "CALLS": str(calls), "DOCKER": "docker", "HOME": str(home)},
    )  # fmt: skip


def test_nothing_to_do_when_every_tool_is_there(tmp_path: Path) -> None:
    """Every tool found and the engine answering: exit 0, silent, no apt-get."""
    calls = tmp_path / "calls"
    result = system_tools(stand_ins(tmp_path / "bin", [*TOOLS, "apt-get"], uid=0), calls)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert calls.read_text().splitlines() == ["docker info"]


def test_as_a_user_it_stops_with_one_line_naming_the_packages(tmp_path: Path) -> None:
    """Not root: exit 1 and one line naming each missing package once and the command; nothing
    installed, nothing else run."""
    calls = tmp_path / "calls"
    present = [tool for tool in TOOLS if tool not in ("cloud-init", "pk12util", "certutil")]
    result = system_tools(stand_ins(tmp_path / "bin", [*present, "apt-get"], uid=1000), calls)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "make test needs cloud-init libnss3-tools (Debian packages): "
        "sudo apt-get install cloud-init libnss3-tools"
    ]
    assert not calls.exists()


def test_as_root_on_debian_it_installs_them(tmp_path: Path) -> None:
    """Root with apt-get: installs exactly the missing packages, then checks the engine."""
    calls = tmp_path / "calls"
    result = system_tools(stand_ins(tmp_path / "bin", ["apt-get"], uid=0), calls)
    assert result.returncode == 1  # the engine it just "installed" is still not on the PATH
    assert calls.read_text().splitlines() == [
        "apt-get update -qq",
        f"apt-get install -y -qq {' '.join(PACKAGES)}",
    ]
    assert result.stderr.splitlines()[-1].startswith("make test needs a Docker engine")


def test_without_pyenvs_pythons_it_stops_with_one_line(tmp_path: Path) -> None:
    """The client-version tests' Pythons (3.13.0, another 3.11) are not Debian's: without them,
    one line says which and how, before the engine is even asked."""
    calls = tmp_path / "calls"
    bin_dir = stand_ins(tmp_path / "bin", [*TOOLS, "apt-get"], uid=0)
    result = system_tools(bin_dir, calls, pyenv(tmp_path / "home", "3.11.7"))
    assert result.returncode == 1 and not calls.exists()
    assert result.stderr.splitlines() == [
        f"make test needs Python 3.13.0 and a Python 3.11 in {tmp_path}/home/.pyenv/versions: "
        "pyenv install 3.13.0 3.11.7 (https://github.com/pyenv/pyenv)"
    ]


@pytest.mark.container
def test_make_unit_passes_with_only_what_a_bare_debian_has(tmp_path: Path) -> None:
    """The unit tier, run with a PATH that holds only the commands of the image's Debian base
    (debootstrap's minbase with python3, or the slim Python image) and make: it passes, so it
    calls no system tool (cloud-init, git, docker, ...)."""
    base = subprocess.run(
        [str(ROOT / "docker" / "base-image.sh")], capture_output=True, text=True, check=True,
        timeout=600, env={**os.environ, "DOCKER": DOCKER},
    ).stdout.strip()  # fmt: skip
    listing = docker(
        "run", "--rm", "--entrypoint", "/bin/sh", base, "-c",
        "ls /usr/local/bin /usr/bin /bin /usr/sbin /sbin 2>/dev/null",
    ).stdout  # fmt: skip
    bare = tmp_path / "bin"
    bare.mkdir()
    for name in {*listing.split(), "make"}:
        if found := next(
            (d / name for d in map(Path, os.get_exec_path()) if (d / name).is_file()), None
        ):
            (bare / name).symlink_to(found)
    assert not (bare / "git").exists() and not (bare / "cloud-init").exists()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "not container and not system", "-q",
         "-p", "no:cacheprovider", "-x"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{bare}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

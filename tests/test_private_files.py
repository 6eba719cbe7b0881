"""The private directory: modes, exclusivity, symlinks, clean-up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint import private_files
from entrypoint.errors import StartupError
from entrypoint.mounts import filesystem_type
from entrypoint.private_files import (
    private_dir,
    remove_private_files,
    require_tmpfs,
    write_private_files,
)

FILES = {"cert.pem": b"cert", "key.pem": b"key"}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_directory_is_0700_and_files_0600(tmp_path: Path) -> None:
    """Created private from the start, whatever the umask."""
    directory = tmp_path / "private"
    old = os.umask(0)
    try:
        write_private_files(directory, FILES)
    finally:
        os.umask(old)
    assert mode(directory) == 0o700
    assert {p.name: (mode(p), p.read_bytes()) for p in directory.iterdir()} == {
        "cert.pem": (0o600, b"cert"),
        "key.pem": (0o600, b"key"),
    }


def test_a_stale_directory_of_ours_is_replaced(tmp_path: Path) -> None:
    """A directory an earlier run left (same owner) is removed, not trusted."""
    directory = tmp_path / "private"
    directory.mkdir(mode=0o777)
    (directory / "key.pem").write_text("old")
    write_private_files(directory, FILES)
    assert mode(directory) == 0o700 and (directory / "key.pem").read_bytes() == b"key"


def test_a_symlink_in_the_way_is_refused_and_not_followed(tmp_path: Path) -> None:
    """A symlink where the directory goes is refused; its target is untouched."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    directory = tmp_path / "private"
    directory.symlink_to(target)
    with pytest.raises(StartupError, match="is not ours"):
        write_private_files(directory, FILES)
    assert directory.is_symlink() and list(target.iterdir()) == []


def test_a_directory_appearing_after_the_stale_check_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another container sharing /dev/shm makes the directory just after our check: refused, and
    its directory is not removed."""
    directory = tmp_path / "private"
    check_for_stale = private_files._remove_stale

    def check_then_lose_the_race(path: Path) -> None:
        check_for_stale(path)
        path.mkdir()
        (path / "theirs").write_text("kept")

    monkeypatch.setattr(private_files, "_remove_stale", check_then_lose_the_race)
    with pytest.raises(StartupError, match="cannot create"):
        write_private_files(directory, FILES)
    assert (directory / "theirs").read_text() == "kept"


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    """A file that cannot be written (here: a name with a slash) removes the whole directory."""
    directory = tmp_path / "private"
    with pytest.raises(StartupError, match="cannot write the private files"):
        write_private_files(directory, {"cert.pem": b"ok", "no/such/dir": b"x"})
    assert not directory.exists()


def test_remove_is_idempotent(tmp_path: Path) -> None:
    """Removing twice, or a directory never made, is fine."""
    directory = tmp_path / "private"
    write_private_files(directory, FILES)
    remove_private_files(directory)
    remove_private_files(directory)
    assert not directory.exists()


def test_tmpfs_is_required() -> None:
    """/dev/shm is a tmpfs; the root filesystem of a test machine is not accepted."""
    assert filesystem_type(Path("/dev/shm")) == "tmpfs"
    require_tmpfs(private_dir())
    if filesystem_type(Path("/")) != "tmpfs":
        with pytest.raises(StartupError, match="is not a tmpfs"):
            require_tmpfs(Path("/dask-tls"))


def private_dir_of_a_process(*prefix: str) -> str:
    code = "from entrypoint.private_files import private_dir; print(private_dir())"
    return subprocess.run(
        [*prefix, sys.executable, "-c", code],
        capture_output=True, text=True, check=True, timeout=30, cwd=Path(__file__).parents[1],
    ).stdout.strip()  # fmt: skip


def test_the_directory_is_one_per_mount_namespace() -> None:
    """Every process of a mount namespace (a container) finds the same directory, with no variable
    to carry it; a process in another mount namespace (another container) gets another."""
    ours = private_dir()
    assert ours.parent == Path("/dev/shm") and ours.name.startswith("dask-tls-")
    assert private_dir_of_a_process("/usr/bin/env", "-i") == str(ours)
    other = private_dir_of_a_process("unshare", "--user", "--map-root-user", "--mount")
    assert other.startswith("/dev/shm/dask-tls-") and other != str(ours)

"""The private directory: modes, exclusivity, symlinks, clean-up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from entrypoint.errors import StartupError
from entrypoint.mounts import filesystem_type
from entrypoint.private_files import (
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
    require_tmpfs(Path("/dev/shm/dask-tls"))
    if filesystem_type(Path("/")) != "tmpfs":
        with pytest.raises(StartupError, match="is not a tmpfs"):
            require_tmpfs(Path("/dask-tls"))

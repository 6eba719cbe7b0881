"""The private directory on tmpfs that holds the key material while the cluster runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from entrypoint.errors import StartupError
from entrypoint.mounts import filesystem_type

# /dev/shm is a tmpfs in every Docker container, and stays writable under --read-only. It is the
# host's under --ipc=host, and one container's is shared under --ipc=container:NAME.
SHM = Path("/dev/shm")
# Every container has a mount namespace of its own, and every process in it (docker exec, the
# HEALTHCHECK under env -i) sees the same: its inode names the directory, no variable needed.
MOUNT_NAMESPACE = Path("/proc/self/ns/mnt")
IPC_NAMESPACE = Path("/proc/self/ns/ipc")
HOST_IPC_NAMESPACE = 0xEFFFFFFF  # the host's first IPC namespace (PROC_IPC_INIT_INO, Linux)
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def private_dir() -> Path:
    """This container's directory in /dev/shm, the same for every process of the container."""
    try:
        namespace = MOUNT_NAMESPACE.stat().st_ino
    except OSError as error:
        raise StartupError(f"cannot read {MOUNT_NAMESPACE}: {error.strerror}") from None
    return SHM / f"dask-tls-{namespace}"


def shm_is_the_hosts() -> bool:
    """Does this container share the host's IPC namespace (--ipc=host), and so its /dev/shm?"""
    try:
        return IPC_NAMESPACE.stat().st_ino == HOST_IPC_NAMESPACE
    except OSError:
        return False


def require_tmpfs(directory: Path) -> None:
    if filesystem_type(directory.parent) != "tmpfs":
        raise StartupError(f"{directory.parent} is not a tmpfs: keys must not touch a disk")


def write_private_files(directory: Path, files: dict[str, bytes]) -> None:
    """Create `directory` (0700) holding `files` (0600 each, created exclusively, symlinks refused).

    On failure nothing is left behind. A directory left by an earlier run of ours (same owner,
    a real directory) is removed first; anything else in the way is refused.
    """
    _remove_stale(directory)
    old_umask = os.umask(0o077)
    try:
        _make_directory(directory)
        try:
            _check_private(directory)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                for name, data in files.items():
                    _write_new(dir_fd, name, data)
            finally:
                os.close(dir_fd)
        except OSError as error:
            remove_private_files(directory)
            raise StartupError(
                f"cannot write the private files in {directory}: {error.strerror}"
            ) from None
        except BaseException:
            remove_private_files(directory)
            raise
    finally:
        os.umask(old_umask)


def remove_private_files(directory: Path) -> None:
    """When this returns, `directory` no longer exists (a symlink in its place is left alone)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if not directory.is_symlink():
            shutil.rmtree(directory)


def _remove_stale(directory: Path) -> None:
    """Ours and stale: a live container never has our name (each has its own mount namespace),
    so it was left by a container that was killed, whose namespace's inode is now ours."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise StartupError(
            f"{directory} exists and is not ours: remove it, or restart the container"
        )
    shutil.rmtree(directory)


def _make_directory(directory: Path) -> None:
    """mkdir, failing on whatever appeared there since the stale check: that one is not ours to
    remove (/dev/shm may be shared with other containers)."""
    try:
        directory.mkdir(mode=0o700)
    except OSError as error:
        raise StartupError(f"cannot create {directory}: {error.strerror}") from None


def _check_private(directory: Path) -> None:
    info = os.lstat(directory)
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) != 0o700:
        raise StartupError(f"{directory} was not created private (0700, ours)")


def _write_new(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, FILE_FLAGS, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def replace_private_files(directory: Path, files: dict[str, bytes]) -> None:
    """Replace each file of `directory` in one step (a new 0600 file renamed over the old one), in
    the order given: a reader sees either the old file or the new one, never a part."""
    old_umask = os.umask(0o077)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name, data in files.items():
            staged = f".{name}.new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged, dir_fd=dir_fd)
            _write_new(dir_fd, staged, data)
            os.replace(staged, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
        os.umask(old_umask)

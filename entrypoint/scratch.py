"""The workers' scratch space, where they spill data that does not fit in memory: it must be
writable, and it should be a disk. On tmpfs (RAM) spilled data still counts against the
container's memory limit, and a spilling cluster is OOM-killed instead of slowed down."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

from entrypoint.contract import SCRATCH, SCRATCH_VAR
from entrypoint.errors import ConfigError
from entrypoint.mounts import filesystem_type

VOLUME_FIX = f"mount a disk volume there, e.g. -v dask-scratch:{SCRATCH}"

log = logging.getLogger("entrypoint")


def check(directory: Path) -> None:
    """Raise ConfigError if this process cannot create a file in `directory`; warn (one line,
    with the fix) if it is on tmpfs. Leaves nothing behind."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM):
            # the image's /scratch (and a new volume made from it) is uid 10001's and group 0's
            fix = "run with --group-add 0 (or --user N:0)"
        else:  # missing, or on a read-only filesystem
            fix = VOLUME_FIX
        raise ConfigError(
            SCRATCH_VAR,
            f"the workers' scratch space {directory} is not writable by uid {os.getuid()} "
            f"gid {os.getgid()} ({error.strerror})",
            f"{fix}, or set {SCRATCH_VAR} to a directory this user can write",
        ) from None
    if filesystem_type(directory.resolve()) == "tmpfs":
        log.warning(
            "%s: the workers' scratch space %s is on tmpfs (RAM): spilled data stays in memory "
            "and can get the container OOM-killed; %s",
            SCRATCH_VAR, directory, VOLUME_FIX,
        )  # fmt: skip

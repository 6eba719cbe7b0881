"""Which mount holds a path, from /proc/self/mountinfo: its filesystem type (tmpfs is RAM), and
what part of its source filesystem it shows (a bind mount from the host shows a host directory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Mount:
    point: str  # where it is mounted here
    root: str  # which directory of its source filesystem appears there
    fstype: str


def mount_of(path: Path) -> Mount:
    """The mount holding `path` (absolute): the longest mount point that is a prefix of it."""
    best = Mount("", "", "")
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        root, point = (field.replace("\\040", " ") for field in fields[3:5])
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best.point):
            best = Mount(point, root, fields[fields.index("-") + 1])
    return best


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path`, from psutil (which cannot tell a bind mount's
    root: mount_of reads that)."""
    import psutil  # distributed's dependency; imported here, only the entrypoint needs it

    holding = [p for p in psutil.disk_partitions(all=True) if path.is_relative_to(p.mountpoint)]
    return max(holding, key=lambda p: len(p.mountpoint)).fstype if holding else ""

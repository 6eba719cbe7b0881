"""The workers' scratch space: refused when it cannot be written, a warning when it is RAM."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from entrypoint import scratch
from entrypoint.errors import EXIT_CONFIG, ConfigError
from entrypoint.mounts import filesystem_type


def test_a_disk_directory_passes_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A writable directory on disk: no warning, and the probe file is gone."""
    if filesystem_type(tmp_path) == "tmpfs":
        pytest.skip(f"{tmp_path} is itself on tmpfs here")
    scratch.check(tmp_path)
    assert caplog.records == [] and list(tmp_path.iterdir()) == []


def test_tmpfs_gets_one_warning_line_with_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    """/dev/shm is tmpfs: one warning that says RAM and how to mount a volume."""
    with caplog.at_level(logging.WARNING, logger="entrypoint"):
        scratch.check(Path("/dev/shm"))
    [record] = caplog.records
    message = record.getMessage()
    assert "DASK_TEMPORARY_DIRECTORY" in message and "tmpfs (RAM)" in message
    assert "-v dask-scratch:/scratch" in message and "\n" not in message


def test_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    """Exit 78, naming the variable, the directory and the fix."""
    with pytest.raises(ConfigError) as raised:
        scratch.check(tmp_path / "missing")
    assert raised.value.exit_code == EXIT_CONFIG
    missing = tmp_path / "missing"
    assert str(raised.value).startswith(
        f"DASK_TEMPORARY_DIRECTORY: the workers' scratch space {missing} is not writable"
    )
    assert "mount a disk volume there" in str(raised.value)

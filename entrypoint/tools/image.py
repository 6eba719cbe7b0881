"""Where a tool runs. In the image the user's files exist only under a folder mounted into the
container, so a path the tool writes or prints must be under one (README: `-v "$PWD:$PWD"`)."""

from __future__ import annotations

import os
from pathlib import Path

import entrypoint

IN_IMAGE_VAR = "IN_DASK_TLS_IMAGE"  # set by the Dockerfile's final stage
# the image's WORKDIR: nothing of the user's is there
APP_DIR = Path(entrypoint.__file__).resolve().parents[1]


def in_image() -> bool:
    return bool(os.environ.get(IN_IMAGE_VAR))

"""The README cannot drift: its ```sh blocks, read from README.md itself, run in order in a fresh
copy of the checkout against the image under test, as a newcomer would paste them one after the
other (one shell per block, `set -euo pipefail`).

After each block, every container it started (with `docker run` or `docker compose`) must become
healthy; then they, their volumes and any image tag the block made are removed. `docker` in a
block is tests/readme_docker.py, which gives the block's names, ports and volumes names of this
run's own (the engine is shared). HOME is a directory of the copy's, so nothing a block writes
there (~/.config/dask, ~/.pki) reaches this machine's user.

A block that cannot run here is marked on the line before its fence with
`<!-- not run: WHY -->` (README, "Tests"); it is still checked to be valid bash.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client_env import ROOT, copy_of_project
from tests.containers import DOCKER, OURS, docker, logs_of

README = ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- not run: (\S.*?) -->")
BLOCK_TIMEOUT = 900  # a cold `make client` on a busy machine; a block takes seconds to 2 minutes
HEALTHY_TIMEOUT = 180
LABEL = "dask-tls-readme"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, counted from 1
    text: str
    not_run: str | None  # why, for a block marked as one that cannot run here

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def sh_blocks(text: str) -> list[Block]:
    """Every ```sh block of `text`, with the reason of the marker on the line before, if any."""
    lines, found, index = text.splitlines(), [], 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        if lines[index] == "```sh":
            marker = NOT_RUN.fullmatch(lines[index - 1].strip()) if index else None
            body = "\n".join(lines[index + 1 : end])
            found.append(Block(index + 1, body, marker[1] if marker else None))
        index = end + 1
    return found


BLOCKS = sh_blocks(README.read_text())
RUN = [block for block in BLOCKS if block.not_run is None]


@dataclass
class Sandbox:
    checkout: Path
    env: dict[str, str]
    prefix: str
    state: Path


@pytest.fixture(scope="module")
def sandbox(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A copy of the checkout as a fresh clone has it, a HOME of its own, and `docker` (the
    stand-in above) first on the PATH and in DOCKER, which the Makefile uses."""
    root = tmp_path_factory.mktemp("readme")
    checkout = copy_of_project(root / "clone")
    home, bin_dir, state = root / "home", root / "bin", root / "state"
    for directory in (home, bin_dir, state):
        directory.mkdir()
    stand_in = bin_dir / "docker"
    stand_in.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/tests/readme_docker.py" "$@"\n'
    )
    stand_in.chmod(0o755)
    kept = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("LANG", "TMPDIR")}
    pip_config = Path.home() / ".config" / "pip" / "pip.conf"  # this machine's index, if any
    env = {
        **kept, "HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DOCKER": str(stand_in), "IMAGE": image, "DOCKER_BUILDKIT": "1",
        "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
        **({"PIP_CONFIG_FILE": str(pip_config)} if pip_config.exists() else {}),
        "README_DOCKER": DOCKER, "README_IMAGE": image, "README_PREFIX": OURS[0],
        "README_STATE": str(state),
    }  # fmt: skip
    found = Sandbox(checkout, env, OURS[0], state)
    try:
        yield found
    finally:
        clean_up(found)


def run_block(sandbox: Sandbox, block: Block) -> subprocess.CompletedProcess[str]:
    """The block in bash, in the checkout; on a hang, its whole process group is killed."""
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block.text], cwd=sandbox.checkout, env=sandbox.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"{block} still running after {BLOCK_TIMEOUT} s:\n{stderr}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def started(sandbox: Sandbox) -> list[str]:
    """The containers this run's blocks started and left: by `docker run` or compose."""
    filters = [f"label={LABEL}={sandbox.prefix}"]
    filters += [f"label=com.docker.compose.project={p}" for p in known(sandbox, "projects")]
    names: list[str] = []
    for label in filters:
        listed = docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout
        names += sorted(listed.split())
    return names


def known(sandbox: Sandbox, kind: str) -> dict[str, str]:
    """What readme_docker.py wrote down: containers, volumes, tags or compose projects."""
    path = sandbox.state / f"{kind}.json"
    found: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    return found


STATE = "{{.State.Status}} {{.State.Health.Status}}"
ENDED = "{{.State.Status}}, exit code {{.State.ExitCode}}, health {{.State.Health.Status}}"


def not_healthy(containers: list[str]) -> dict[str, str]:
    """Wait for each container to be healthy; how each that is not ended, with its logs."""
    deadline, waiting = time.monotonic() + HEALTHY_TIMEOUT, list(containers)
    while waiting and time.monotonic() < deadline:
        states = {name: docker("inspect", "-f", STATE, name).stdout.strip() for name in waiting}
        if any(not state.startswith("running") for state in states.values()):
            break
        waiting = [name for name, state in states.items() if state != "running healthy"]
        time.sleep(1)
    return {
        name: f"{docker('inspect', '-f', ENDED, name).stdout.strip()}\n{logs_of(name)[-3000:]}"
        for name in waiting
    }


def clean_up(sandbox: Sandbox) -> None:
    """Remove what the blocks made on the engine: containers (with their anonymous volumes),
    named volumes, compose networks, image tags; then forget them."""
    for name in started(sandbox):
        docker("rm", "-f", "-v", name, check=False)
    for volume in known(sandbox, "volumes").values():
        docker("volume", "rm", volume, check=False)
    for project in known(sandbox, "projects"):
        docker("network", "rm", f"{project}_default", check=False)
    for tag in known(sandbox, "tags").values():
        docker("rmi", tag, check=False)
    for path in sandbox.state.iterdir():
        path.unlink()


@pytest.mark.container
@pytest.mark.parametrize("block", RUN, ids=str)
def test_readme_block_runs(sandbox: Sandbox, block: Block) -> None:
    """The block exits 0, and every container it started is healthy; nothing is left."""
    try:
        result = run_block(sandbox, block)
        said = f"{block}:\n{block.text}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n"
        assert result.returncode == 0, said + result.stderr[-4000:]
        failed = not_healthy(started(sandbox))
        assert not failed, said + "\n".join(f"--- {n}: {s}" for n, s in failed.items())
    finally:
        clean_up(sandbox)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run], ids=str)
def test_blocks_that_cannot_run_here_say_why_and_are_valid_bash(block: Block) -> None:
    """A marked block names its reason and still parses."""
    assert block.not_run and len(block.not_run) > 10
    result = subprocess.run(["bash", "-n", "-c", block.text], capture_output=True, text=True)
    assert result.returncode == 0, f"{block}: {result.stderr}"


def test_every_marker_is_well_formed_and_stands_before_a_sh_block() -> None:
    """A marker that is misspelt, or not right before a ```sh fence, would leave a block run (or
    not) against the writer's intent: each `<!-- not run` line has a reason and a block after it."""
    lines = README.read_text().splitlines()
    markers = [i for i, line in enumerate(lines) if line.startswith("<!-- not run")]
    assert markers
    for index in markers:
        assert NOT_RUN.fullmatch(lines[index]), f"README.md:{index + 1}: {lines[index]}"
        assert lines[index + 1] == "```sh", f"README.md:{index + 2}: not a ```sh fence"
    assert len(markers) == sum(1 for block in BLOCKS if block.not_run)
    assert len(RUN) >= 10  # the parser still finds the README's blocks

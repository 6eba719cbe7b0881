"""The files that cannot import entrypoint/contract.py (the Dockerfile, YAML) say what it says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from entrypoint import contract

ROOT = Path(__file__).parents[1]


def dockerfile_args() -> dict[str, str]:
    """The final stage's ARG defaults (`ARG NAME=value ...`)."""
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    return dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ARG (.+)$", final, re.M))))


def load(name: str) -> Any:
    return yaml.safe_load((ROOT / "docker" / name).read_text())


def test_the_dockerfile_builds_the_contract() -> None:
    """The image's user, spill directory and ports are the contract's."""
    args = dockerfile_args()
    assert args["UID"] == str(contract.UID) and args["SCRATCH"] == contract.SCRATCH
    assert (args["SCHEDULER_PORT"], args["DASHBOARD_PORT"]) == (
        str(contract.SCHEDULER_PORT),
        str(contract.DASHBOARD_PORT),
    )


def test_the_structure_test_checks_the_contract() -> None:
    """container-structure-test expects the contract's user and ports."""
    metadata = load("structure-test.yaml")["metadataTest"]
    assert metadata["user"] == f"{contract.UID}:{contract.UID}"
    assert metadata["exposedPorts"] == [str(contract.SCHEDULER_PORT), str(contract.DASHBOARD_PORT)]


def test_compose_uses_the_contract() -> None:
    """The compose file publishes the contract's ports, points workers at the scheduler's port and
    gives them a volume at the spill directory."""
    services = load("compose.yaml")["services"]
    published = [entry.rsplit(":", 1)[1] for entry in services["scheduler"]["ports"]]
    assert published == [str(contract.SCHEDULER_PORT), str(contract.DASHBOARD_PORT)]
    worker = services["worker"]
    address = worker["environment"][contract.SCHEDULER_ADDRESS_VAR]
    assert address.endswith(f":{contract.SCHEDULER_PORT}")
    assert contract.SCRATCH in worker["volumes"]


def test_the_shell_scripts_get_the_contract_from_the_image() -> None:
    """`python -m entrypoint.contract` prints assignments the scripts eval."""
    assignments = dict(line.split("=", 1) for line in contract.shell().splitlines())
    assert assignments["SCHEDULER_PORT"] == str(contract.SCHEDULER_PORT)
    for script in ("run-local.sh", "client-env.sh"):
        code = [line for line in (ROOT / "docker" / script).read_text().splitlines()
                if not line.lstrip().startswith("#")]  # fmt: skip
        assert any("-m entrypoint.contract" in line for line in code)
        assert not [line for line in code if str(contract.SCHEDULER_PORT) in line]

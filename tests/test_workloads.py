"""The work users bring, from a client environment made by `make client`, on the image run as
the README shows: hardened (--read-only --tmpfs /tmp, a volume for spill) and, to write into a
host directory, as the user's uid with the directory mounted at the same path. Also: spilling past
memory to the volume, the user's own packages, `make client`'s choice of Python, clients of other
versions. (Load: test_workloads_load.py; the slim image: test_workloads_slim.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from distributed import Client

from tests.client_env import (
    MAKE_TIMEOUT,
    ROOT,
    cluster_env,
    copy_of_project,
    make,
    make_client,
    run_workload,
    sibling_tag,
)
from tests.containers import HARDENED, Container, docker
from tests.material import client_security

pytestmark = [pytest.mark.container, pytest.mark.slow]
ROWS = 200_000  # tests/workloads.py's frames
TOTAL = 1_500_000_000  # bytes persisted
CHUNK = 64_000_000
WORKER_MEMORY = 512 << 20
PYENV = Path.home() / ".pyenv" / "versions"
DISTRIBUTED = version("distributed")  # the lock's, as in the image
# The client's side: connect, compute, print what happened in one line.
CONNECT = """
import sys
from distributed import Client
from distributed.security import Security
ca, cert, key, address = sys.argv[1:]
sec = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
try:
    with Client(address, security=sec, timeout="20s") as client:
        print("computed", client.submit(sum, [1, 2, 3]).result(timeout=30))
except ImportError as error:  # the refusal; anything else fails with its traceback
    print(type(error).__name__, error)
"""
VERSION = "import platform; print(platform.python_version())"
PYPI_PACKAGE = "humanize"  # small, pure Python, in no group of poetry.lock
LOCAL_PACKAGE = "greeting"
LOCAL_FILES = {
    "pyproject.toml": f"""\
[project]
name = "{LOCAL_PACKAGE}"
version = "0.1.0"

[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
""",
    f"{LOCAL_PACKAGE}/__init__.py": "def hello(name: str) -> str:\n    return f'hello {name}'\n",
}


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("host-data")


@pytest.fixture(scope="module")
def readme_cluster(image: str, client_certs: Path, host_dir: Path) -> Iterator[Container]:
    volume = f"dask-tls-test-{os.getpid()}-workloads"
    run = [
        "--read-only", "--tmpfs", "/tmp", "-v", f"{volume}:/scratch",
        "--user", f"{os.getuid()}:{os.getgid()}", "--group-add", "0",
        "-v", f"{host_dir}:{host_dir}",
    ]  # fmt: skip
    container = Container(image, {**cluster_env(client_certs), "NUM_WORKERS": "2"}, docker_args=run)
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()
        docker("volume", "rm", volume, check=False)


def test_versions_match_and_the_dashboard_link_is_https(
    readme_cluster: Container, client_python: Path
) -> None:
    """get_versions(check=True) warns about nothing (Python included); the link is https."""
    result = run_workload(client_python, readme_cluster, "versions")
    assert result["warnings"] == []
    assert result["python"]["client"] == result["python"]["scheduler"]
    assert result["dashboard_link"].startswith("https://")


def test_dataframe_groupby(readme_cluster: Container, client_python: Path) -> None:
    """A groupby-sum on the cluster equals pandas' own."""
    assert run_workload(client_python, readme_cluster, "groupby") == {"equal": True, "groups": 97}


def test_p2p_shuffle(readme_cluster: Container, client_python: Path) -> None:
    """A P2P shuffle ran: every key in exactly one partition, no row lost."""
    result = run_workload(client_python, readme_cluster, "shuffle")
    assert result["rows"] == ROWS and result["keys_in_one_partition"]
    assert {"shuffle-transfer", "shuffle-barrier"} <= set(result["task_kinds"])


def test_merge(readme_cluster: Container, client_python: Path) -> None:
    """A merge of two frames equals pandas' merge."""
    assert run_workload(client_python, readme_cluster, "merge") == {"equal": True, "rows": ROWS}


def test_parquet_round_trip_in_a_host_directory(
    readme_cluster: Container, client_python: Path, host_dir: Path
) -> None:
    """The workers write parquet into the bind-mounted host directory, as the user's uid, and
    read it back equal."""
    target = host_dir / "frame.parquet"
    result = run_workload(client_python, readme_cluster, "parquet", str(target))
    assert result == {"equal": True, "rows": ROWS}
    parts = list(target.glob("*.parquet"))
    assert len(parts) == 4
    assert {(p.stat().st_uid, p.stat().st_gid) for p in parts} == {(os.getuid(), os.getgid())}


def test_bag_to_dataframe(readme_cluster: Container, client_python: Path) -> None:
    """A bag of records becomes a dataframe on the cluster."""
    result = run_workload(client_python, readme_cluster, "bag_to_dataframe")
    assert result == {"sum": sum(range(10_000)), "columns": ["n", "name"]}


def test_workers_listen_only_inside_the_container(
    readme_cluster: Container, client_python: Path
) -> None:
    """Why direct-to-worker comms cannot work from outside one container (README): the workers
    reach their scheduler over loopback, so they listen, and advertise, 127.0.0.1 only."""
    workers = run_workload(client_python, readme_cluster, "worker_addresses")["workers"]
    assert len(workers) == 2
    assert all(address.startswith("tls://127.0.0.1:") for address in workers)


@pytest.mark.load
@pytest.mark.slow
def test_persisting_past_memory_spills_to_the_volume(
    image: str, client_certs: Path, client_python: Path
) -> None:
    """1.5 GB persisted on 2 x 512 MiB workers in a 1600 MB container: the workers spill to the
    volume, nothing is killed, and the data read back from it is bit for bit what was made."""
    volume = f"dask-tls-test-{os.getpid()}-scratch"
    env = {**cluster_env(client_certs), "NUM_WORKERS": "2", "MEMORY_PER_WORKER": "512MiB"}
    run = [*HARDENED, "--memory", "1600m", "-v", f"{volume}:/scratch"]
    container = Container(image, env, docker_args=run)
    try:
        container.wait_healthy()
        result = run_workload(
            client_python, container, "spill", str(TOTAL), str(CHUNK), timeout=900
        )
        logs = container.logs()
        oom_killed = container.state("OOMKilled")
    finally:
        container.remove()
        docker("volume", "rm", volume, check=False)
    assert result["equal"] and result["chunks"] == -(-TOTAL // CHUNK)
    assert result["memory_limits"] == [WORKER_MEMORY] * 2
    spilled = result["spilled"].values()
    assert all(directory.startswith("/scratch/dask-scratch-space/") for directory, _ in spilled)
    assert sum(size for _, size in spilled) > TOTAL - 2 * WORKER_MEMORY
    assert "killed by signal" not in logs and "Restarting worker" not in logs, logs
    assert oom_killed == "false"


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_of_project(tmp_path_factory.mktemp("user-project"))
    for name, text in LOCAL_FILES.items():
        path = project / "packages" / LOCAL_PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    make(project, "add", f"PACKAGES={PYPI_PACKAGE} ./packages/{LOCAL_PACKAGE}")  # as the README
    return project


@pytest.fixture(scope="module")
def user_image(image: str, user_project: Path) -> Iterator[str]:
    tag = sibling_tag(image, "user")
    make(user_project, "build", f"IMAGE={tag}")
    try:
        yield tag
    finally:
        docker("rmi", tag, check=False)


def test_own_packages_import_in_a_task_and_in_the_client(
    user_project: Path, user_image: str, client_certs: Path, tmp_path: Path
) -> None:
    """The PyPI package and the local one import inside a task on the cluster (from the image's
    virtualenv) and in the copy's `make client` environment, which still matches the image."""
    python = make_client(user_project, user_image, tmp_path / "venv", client_certs)
    container = Container(user_image, {**cluster_env(client_certs), "NUM_WORKERS": "1"})
    try:
        container.wait_healthy()
        found = run_workload(python, container, "imports", PYPI_PACKAGE, LOCAL_PACKAGE)
        versions = run_workload(python, container, "versions")
    finally:
        container.remove()
    for where in (found["cluster"], found["client"]):
        assert set(where) == {PYPI_PACKAGE, LOCAL_PACKAGE}
    assert all(file.startswith("/opt/venv/") for file in found["cluster"].values())
    assert all(file.startswith(str(tmp_path / "venv")) for file in found["client"].values())
    assert versions["warnings"] == []


def image_python(image: str) -> str:
    return docker("run", "--rm", "--entrypoint", "python", image, "-c", VERSION).stdout.strip()


def interpreter(want_minor: str, same: bool, avoid: str) -> Path:
    """A pyenv Python of `want_minor` (same=True) or of another minor, never version `avoid`."""
    for candidate in sorted(PYENV.glob("*/bin/python")):
        version = candidate.parts[-3]
        if version != avoid and (version.rsplit(".", 1)[0] == want_minor) == same:
            return candidate
    pytest.fail(f"no pyenv Python {'' if same else 'other than '}{want_minor} in {PYENV}")


def make_client_on(image: str, python: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "client", f"IMAGE={image}", f"PYTHON={python}", f"CLIENT_VENV={venv}",
         f"CERTS={venv.parent}"],
        cwd=ROOT, capture_output=True, text=True, timeout=MAKE_TIMEOUT,
    )  # fmt: skip


def test_another_minor_version_is_refused(image: str, tmp_path: Path) -> None:
    """PYTHON=a 3.12 (or any other minor) for a 3.11 image: one line naming both, no venv."""
    wanted = image_python(image)
    other = interpreter(wanted.rsplit(".", 1)[0], same=False, avoid=wanted)
    result = make_client_on(image, other, tmp_path / "venv")
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if "Python" in line]
    assert line.startswith(f"no Python {wanted.rsplit('.', 1)[0]} found (the image runs {wanted}")
    assert not (tmp_path / "venv").exists()


def test_another_patch_release_is_used_with_one_warning(
    image: str, client_certs: Path, tmp_path: Path
) -> None:
    """PYTHON=3.11.x with another x: the environment is made on it, and one warning line says
    get_versions will flag the difference."""
    wanted = image_python(image)
    patch = interpreter(wanted.rsplit(".", 1)[0], same=True, avoid=wanted)
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (tmp_path / name).write_bytes((client_certs / name).read_bytes())
    result = make_client_on(image, patch, tmp_path / "venv")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "get_versions(check=True) will flag" in warnings[0]
    made = tmp_path / "venv" / "bin" / "python"
    version = subprocess.run(
        [str(made), "-c", VERSION], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == patch.parts[-3] != wanted


def client_environment(name: str, python: Path, *packages: str) -> Path:
    """A venv under .cache/ (made once, reused) with `packages` from PyPI; its python."""
    if not python.exists():
        pytest.fail(f"{python} is missing: this test needs another Python (pyenv)")
    home = ROOT / ".cache" / "clients" / name
    if not (home / "ok").exists():
        commands: list[list[str | Path]] = [
            [python, "-m", "venv", "--clear", home],
            [home / "bin" / "python", "-m", "pip", "install", "--quiet", *packages],
        ]
        for command in commands:
            subprocess.run(command, check=True, timeout=600, capture_output=True)
        (home / "ok").touch()
    return home / "bin" / "python"


@pytest.fixture(
    params=[
        ("python3.13", PYENV / "3.13.0" / "bin" / "python3", f"distributed=={DISTRIBUTED}"),
        ("distributed-2026.7.1", Path(sys.executable), "distributed==2026.7.1"),
    ],
    ids=lambda p: p[0],
)
def mismatched(request: pytest.FixtureRequest) -> tuple[str, Path]:
    name, python, package = request.param
    return name, client_environment(name, python, package)


def test_a_mismatched_client_is_refused_and_the_cluster_carries_on(
    fresh: Container, pems: dict[str, str], mismatched: tuple[str, Path]
) -> None:
    """A client on another Python minor version or distributed release is refused at connect with
    both versions named; a matching client connected before keeps computing on the same workers."""
    name, python = mismatched
    with Client(fresh.address, security=client_security(pems), timeout="20s") as client:
        workers = set(client.scheduler_info()["workers"])
        result = subprocess.run(
            [python, "-c", CONNECT, pems["ca"], pems["client"], pems["client_key"], fresh.address],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        said = result.stdout.strip()
        assert said.startswith("ImportError refused: this client runs"), (
            result.stdout + result.stderr
        )
        expected = (
            "Python 3.13 (the cluster: 3.11)"
            if name == "python3.13"
            else (f"distributed 2026.7.1 (the cluster: {DISTRIBUTED})")
        )
        assert expected in said
        for _ in range(3):
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        assert set(client.scheduler_info()["workers"]) == workers
    assert "refused: runs" in fresh.logs() and "exited" not in fresh.logs()

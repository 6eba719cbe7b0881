"""Google Compute Engine, offline: the rendered user-datas (one VM; a scheduler VM and worker VMs)
are valid cloud-config; their fetch scripts, run against a stand-in for the metadata server and
Secret Manager on loopback, write the private files; the exact `docker run` lines they hold give a
working cluster (the VMs rehearsed as containers on one Docker network); gcloud is driven exactly
as printed."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from distributed import Client, Future

from entrypoint.contract import DASHBOARD_PORT, SCHEDULER_PORT, UID
from entrypoint.supervisor import AFTER_DRAIN, KILL_WAIT
from entrypoint.tools import gcloud_apply
from entrypoint.tools.certs import Issued, issue, new_cluster
from entrypoint.tools.cli import main
from entrypoint.tools.gce import (
    DOCKER_HOME,
    ROLES,
    SERVICE,
    WORKER_DRAIN,
    Deployment,
    user_data,
    worker_stop_timeout,
)
from entrypoint.tools.gcloud import SERVICES
from tests import gcloud_stand_in
from tests.containers import docker, wait_for_log
from tests.gce_rehearsal import (
    DAMPING,
    MAXIMUM,
    MINIMUM,
    PROJECT,
    FakeGoogle,
    RehearsedVM,
    on_vm,
    pairs,
    rehearse_autoscaling,
    rendered,
    serve,
    unit_commands,
    vm_environment,
)

CLUSTER = ["gce", "--project", PROJECT, "--image", "img:1", "--source-range", "198.51.100.0/24"]
PRIVATE_IMAGE = (
    "europe-west1-docker.pkg.dev/images-project/dask/dask-tls:0.1.0"  # Artifact Registry
)
SCHEDULER_HOST = f"dask-cluster-scheduler.us-central1-a.c.{PROJECT}.internal"
STAND_IN = Path(gcloud_stand_in.__file__)
README = Path(__file__).parents[1] / "README.md"
AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason=f"the fetch script chowns to uid {UID}, as root on the VM"
)


@pytest.fixture
def vm_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The stand-ins a VM's scripts get here (gce_rehearsal.vm_environment)."""
    with vm_environment(tmp_path) as env:
        yield env


def iptables_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "vm-bin" / "iptables.log"
    return log.read_text().splitlines() if log.exists() else []


@dataclass
class StandInGcloud:
    """tests/gcloud_stand_in.py first on PATH as `gcloud`: the calls it got, the project it
    keeps (see its docstring)."""

    log: Path
    state_file: Path

    def calls(self) -> list[list[str]]:
        """Every call since the last `forget`, in order."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines]

    def forget(self) -> None:
        self.log.unlink(missing_ok=True)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def set(self, **changes: Any) -> None:
        self.state_file.write_text(json.dumps(self.state() | changes))


@pytest.fixture
def gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandInGcloud:
    """The stand-in gcloud, holding a fresh project named PROJECT."""
    stand_in = StandInGcloud(tmp_path / "gcloud.jsonl", tmp_path / "gcloud-state.json")
    stand_in.state_file.write_text(json.dumps(gcloud_stand_in.fresh_state(PROJECT)))
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = {str(STAND_IN)!r}\n"
                    f"runpy.run_path({str(STAND_IN)!r}, run_name='__main__')\n")  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("GCLOUD_STAND_IN_LOG", str(stand_in.log))
    monkeypatch.setenv("GCLOUD_STAND_IN_STATE", str(stand_in.state_file))
    monkeypatch.setattr(gcloud_apply, "sleep", lambda seconds: None)
    return stand_in


def is_read(command: list[str]) -> bool:
    """A call --apply makes beyond the printed plan: the project's DNS setting, or a describe."""
    return "describe" in command


@dataclass
class Driven:
    printed: list[list[str]]
    applied: list[list[str]]
    err: str  # what --apply wrote to stderr


Drive = Callable[[list[str]], Driven]


@pytest.fixture
def drive(gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str]) -> Drive:
    """Runs `gce ARGS` without, then with --apply; asserts the stand-in gcloud got exactly the
    printed commands (and, besides them, reads only), and returns both."""

    def printed_and_applied(args: list[str]) -> Driven:
        assert main(args) == 0
        printed = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
        assert main([*args, "--apply"]) == 0
        err = capsys.readouterr().err
        applied = gcloud.calls()
        gcloud.forget()
        assert [call for call in applied if not is_read(call)] == printed and printed
        return Driven(printed, applied, err)

    return printed_and_applied


@pytest.mark.system
@pytest.mark.parametrize("image", ["img", PRIVATE_IMAGE])
@pytest.mark.parametrize("role", ROLES)
def test_user_data_is_valid_cloud_config(tmp_path: Path, role: str, image: str) -> None:
    """`cloud-init schema` (Debian's cloud-init) accepts the rendered user-data of each role, for
    a public image and a private one (its units configure registry credentials)."""
    if not shutil.which("cloud-init"):
        pytest.fail("cloud-init is missing: `make test` installs it (docker/system-tools.sh)")
    path = tmp_path / "user-data.yaml"
    deployment = Deployment(project="p", image=image, source_ranges=("10.0.0.0/8",), worker_vms=2,
                            spot=True)  # fmt: skip
    path.write_text(user_data(deployment, role))
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_every_unit_runs_hardened_spills_on_a_volume_and_reloads(role: str) -> None:
    """Each role's `docker run` keeps the read-only root, the tmpfs and uid 10001, mounts a volume
    at /scratch; workers share the VM's network and find the scheduler by its internal DNS name;
    `systemctl reload` fetches the secrets again, then sends the container SIGHUP."""
    deployment = Deployment(project=PROJECT, image="img", source_ranges=(), worker_vms=2)
    [run] = unit_commands(deployment, role, "ExecStart")
    assert {
        ("--user", f"{UID}:{UID}"),
        ("--tmpfs", "/tmp"),
        ("-v", "dask-scratch:/scratch"),
    } <= pairs(run)
    assert "--read-only" in run and run[-1] == "img"
    env = {run[i + 1] for i, arg in enumerate(run) if arg == "-e"}
    if role == "worker":
        assert ("--network", "host") in pairs(run) and "-p" not in run
        assert {
            "DASK_ROLE=worker",
            f"DASK_SCHEDULER_ADDRESS=tls://{SCHEDULER_HOST}:{SCHEDULER_PORT}",
        } <= env
    else:
        assert "--network" not in run and {
            ("-p", f"{SCHEDULER_PORT}:{SCHEDULER_PORT}"),
            ("-p", f"{DASHBOARD_PORT}:{DASHBOARD_PORT}"),
        } <= pairs(run)
        assert ("DASK_ROLE=scheduler" in env) == (role == "scheduler")
    open_ports = [["/bin/bash", deployment.open_ports_script]] if role == "worker" else []
    assert unit_commands(deployment, role, "ExecStartPre") == [
        ["-/usr/bin/docker", "rm", "-f", "dask-tls"],  # a leftover container; none is no failure
        ["/bin/bash", deployment.script],
        *open_ports,
    ]
    assert unit_commands(deployment, role, "ExecReload") == [
        ["/bin/bash", deployment.script],
        ["/usr/bin/docker", "kill", "-s", "HUP", "dask-tls"],
    ]


@pytest.mark.parametrize("role", ROLES)
def test_worker_units_give_their_container_the_drain_budget(role: str) -> None:
    """A worker unit's stop lets its container drain: the container's DRAIN_TIMEOUT, then the
    supervisor's close, fit in `docker stop -t` (also the container's own stop timeout), which
    fits in systemd's TimeoutStopSec, all inside a Spot VM's 30 s. Other roles stop as before."""
    deployment = Deployment(project=PROJECT, image="img", source_ranges=(), worker_vms=2)
    [run] = unit_commands(deployment, role, "ExecStart")
    [stop] = unit_commands(deployment, role, "ExecStop")
    timeouts = unit_commands(deployment, role, "TimeoutStopSec")
    if role != "worker":
        assert stop == ["/usr/bin/docker", "stop", "dask-tls"] and timeouts == []
        assert not any(arg.startswith("DRAIN_TIMEOUT=") for arg in run)
        return
    timeout = worker_stop_timeout()
    assert stop == ["/usr/bin/docker", "stop", "-t", str(timeout), "dask-tls"]
    assert {("-e", f"DRAIN_TIMEOUT={WORKER_DRAIN}"), ("--stop-timeout", str(timeout))} <= pairs(run)
    assert WORKER_DRAIN + AFTER_DRAIN + KILL_WAIT <= timeout < int(timeouts[0][0]) <= 30


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("image", "host"),
    [
        (PRIVATE_IMAGE, "europe-west1-docker.pkg.dev"),
        ("eu.gcr.io/images-project/dask-tls:0.1.0", "eu.gcr.io"),
        ("ghcr.io/someone/dask-tls:0.1.0", None),
        ("dask-tls:0.1.0", None),
    ],
)
def test_units_pull_a_google_registry_image_with_the_vm_account(
    role: str, image: str, host: str | None
) -> None:
    """An image in Artifact Registry (or on a gcr.io host): before it pulls, each unit configures
    COS's docker-credential-gcr for that host, with a HOME of its own (COS's root is read-only).
    An image elsewhere: none of it."""
    deployment = Deployment(project=PROJECT, image=image, source_ranges=(), worker_vms=2)
    service = rendered(deployment, role)[SERVICE].splitlines()
    credentials = ["/usr/bin/docker-credential-gcr", "configure-docker", "--registries", host]
    pre = unit_commands(deployment, role, "ExecStartPre")
    if host is None:
        assert not any("credential" in line or "HOME" in line for line in service)
        return
    assert pre[-1] == credentials and credentials not in pre[:-1]  # the last before the pull
    assert f"Environment=HOME={DOCKER_HOME}" in service
    assert f"RuntimeDirectory={Path(DOCKER_HOME).name}" in service


def ephemeral_ports_rule() -> str:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return f"INPUT -p tcp --dport {low}:{high} -j ACCEPT"


def test_worker_vms_open_their_ephemeral_ports_once(tmp_path: Path, vm_env: dict[str, str]) -> None:
    """Container-Optimized OS lets in SSH only, and the workers use the VM's network: the worker
    unit's second ExecStartPre opens the kernel's ephemeral port range (where the workers' and
    nannies' listeners land) to TCP, once however often the unit starts."""
    deployment = Deployment(project=PROJECT, image="img", source_ranges=(), worker_vms=2,
                            script=str(tmp_path / "fetch-secrets.sh"))  # fmt: skip
    script = Path(deployment.open_ports_script)
    script.write_text(rendered(deployment, "worker")[str(script)])
    for _ in range(2):
        subprocess.run(["/bin/bash", str(script)], env=vm_env, check=True, timeout=30)
    rule = ephemeral_ports_rule()
    assert iptables_calls(tmp_path) == [f"-w -C {rule}", f"-w -A {rule}", f"-w -C {rule}"]


@pytest.mark.container
@AS_ROOT
def test_fetch_script_and_docker_run_line_give_a_cluster(
    image: str, tmp_path: Path, vm_env: dict[str, str]
) -> None:
    """The user-data's own script fetches the PEMs into a 0700 directory of 0600 files owned by
    the image's user; its own `docker run` line then serves a cluster a client computes on, though
    a container of its name was left behind (by a crash, say): the unit removes it first."""
    certs = tmp_path / "certs"
    new_cluster(certs)
    serve(certs)
    one = Deployment(project=PROJECT, image=image, source_ranges=(), sizing={"NUM_WORKERS": "2"})
    vm = RehearsedVM(on_vm(one, tmp_path, "all"), "all")
    try:
        docker("create", "--name", vm.deployment.container, image)  # the leftover
        vm.boot(vm_env)
        secrets = Path(vm.deployment.secrets_dir)
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o700 and secrets.stat().st_uid == UID
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in secrets.iterdir()} == dict.fromkeys(
            ("cert", "key", "ca"), 0o600
        )
        with vm.client(certs) as client:
            client.wait_for_workers(2, timeout=60)
            assert client.submit(sum, [40, 2]).result(timeout=30) == 42
        assert vm.stop() == 0
    finally:
        vm.remove()


def results_on(
    client: Client, workers: list[str], count: int
) -> tuple[list[Future[Any]], list[bytes]]:
    """`count` results of os.urandom held by `workers` (computed again, they would differ)."""
    futures = [
        client.submit(os.urandom, 1 << 20, pure=False, workers=workers, allow_other_workers=True)
        for _ in range(count)
    ]
    values = client.gather(futures)
    assert holders(client, futures) <= set(workers)
    return futures, values


def holders(client: Client, futures: list[Future[Any]]) -> set[str]:
    return {worker for held in client.who_has(futures).values() for worker in held}


def renewed(certs: Path, host: str) -> Issued:
    """A new cluster certificate for `host` from the same CA."""
    ca = Issued(
        x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes()),
        serialization.load_pem_private_key((certs / "ca-key.pem").read_bytes(), None),  # type: ignore[arg-type]
    )
    return issue("dask-tls cluster", ca, names=(host,))


@pytest.mark.container
@AS_ROOT
def test_scheduler_and_two_worker_vms_rehearsed_as_containers(
    image: str, tmp_path: Path, vm_env: dict[str, str]
) -> None:
    """The scheduler unit's and two worker units' ExecStartPre and ExecStart, run as containers on
    one Docker network where the scheduler answers to its internal DNS name: a client holding
    `certs new --name <that name>` material computes on both worker containers. Then each unit's
    ExecReload puts renewed material in place under its running container, which loads it (SIGHUP)
    and stays up. A worker unit's ExecStop drains its container: the results it held move to the
    other worker VM, the same bytes."""

    def hostname_after_a_while(_: int) -> str:  # nested: sent by value, as cloudpickle does
        time.sleep(0.05)  # the point: tasks long enough to spread over both workers
        return socket.gethostname()

    cluster = Deployment(project=PROJECT, image=image, source_ranges=(), worker_vms=2,
                         sizing={"NUM_WORKERS": "1"})  # fmt: skip
    certs = tmp_path / "certs"
    assert main(["certs", "new", "--out", str(certs), "--name", cluster.scheduler_host]) == 0
    serve(certs)
    scheduler = RehearsedVM(on_vm(cluster, tmp_path, "scheduler"), "scheduler")
    workers = [RehearsedVM(on_vm(cluster, tmp_path, f"worker-{i}"), "worker") for i in (1, 2)]
    network = f"dask-tls-test-{os.getpid()}-gce-network"
    docker("network", "create", network)
    try:
        for vm in (scheduler, *workers):
            vm.boot(vm_env, network)
        assert f"-w -A {ephemeral_ports_rule()}" in iptables_calls(tmp_path)
        hostnames = {
            docker("inspect", "-f", "{{.Config.Hostname}}", vm.deployment.container).stdout.strip()
            for vm in workers
        }
        with scheduler.client(certs) as client:
            client.wait_for_workers(2, timeout=120)
            tasks = client.map(hostname_after_a_while, range(40), pure=False)
            assert set(client.gather(tasks)) == hostnames

            new = renewed(certs, cluster.scheduler_host)
            FakeGoogle.secrets |= {
                "dask-cluster-cert": new.cert_pem,
                "dask-cluster-key": new.key_pem,
            }
            for vm in (scheduler, *workers):
                vm.reload(vm_env)
                assert base64.b64decode(vm.file("/run/secrets/dask-tls/cert")) == new.cert_pem
                assert vm.running()
            for vm in (scheduler, *workers):  # each container took the renewed certificate in
                wait_for_log(vm.deployment.container, "SIGHUP: serving the new certificate")
            assert client.submit(sum, [40, 2]).result(timeout=30) == 42

            leaving, staying = workers
            on_leaving = leaving.workers(client)
            held, before = results_on(client, on_leaving, 10)
            assert leaving.stop() == 0, leaving.log.read_text()
            assert client.gather(held) == before
            assert not set(on_leaving) & holders(client, held)
            assert "drained 1 workers in " in leaving.log.read_text()
        for vm in (staying, scheduler):
            assert vm.stop() == 0, vm.log.read_text()
    finally:
        for vm in (scheduler, *workers):
            vm.remove()
        docker("network", "rm", network, check=False)


@pytest.mark.container
@AS_ROOT
def test_autoscaling_rehearsed_on_the_engine(
    image: str, tmp_path: Path, vm_env: dict[str, str]
) -> None:
    """`gce --worker-vms 1 --autoscale 1:4` rehearsed: the scheduler VM's unit as a container
    whose autoscaler reaches the stand-in Compute API and metadata server through
    GCE_METADATA_HOST and CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE; each instance of the group a
    worker VM's unit as a container named after it. A burst of 300 one-second tasks grows the
    group from 1 to 4 VMs and no further, upward only, through two 503s that are retried (a log
    line each); results persisted across the grown group; idle, it shrinks back to 1 VM, one VM
    a step, none before the after-growth time, each deleted VM's worker retired first (the
    stand-in saw it so at its deleteInstances) and its container gone; every persisted result
    is there, the same bytes; a task every half second ran throughout."""
    seen = rehearse_autoscaling(image, tmp_path, vm_env, faults={"resize": [503, 503]})
    log = seen.scheduler_log
    resizes = [call for call in seen.calls if call.verb == "resize"]
    assert [call.status for call in resizes][:2] == [503, 503], log
    sizes = [call.args for call in resizes if call.status == 200]
    assert sizes == sorted(set(sizes)) and sizes[-1] == MAXIMUM and seen.largest == MAXIMUM
    retries = [line for line in log.splitlines() if "autoscale: resize " in line]
    assert [line.split("; ")[-1] for line in retries] == ["try 2 of 6 in 1 s", "try 3 of 6 in 2 s"]
    assert all(" 503 " in line for line in retries)
    deletions = [call for call in seen.calls if call.verb == "deleteInstances"]
    assert [len(call.args) for call in deletions] == [1] * (MAXIMUM - MINIMUM), log
    for call in deletions:  # its worker retired (at the scheduler) before it went
        assert call.status == 200 and list(call.seen.values()) == ["closing_gracefully"], call
    assert deletions[0].at - resizes[-1].at >= float(DAMPING["AFTER_GROWTH"])
    assert log.count("autoscale: retiring ") == MAXIMUM - MINIMUM
    assert seen.after == seen.before and len(seen.held_on) == MAXIMUM
    assert len(seen.left) == MINIMUM and seen.held_at_the_end == set(seen.left)
    assert seen.containers == seen.left and set(seen.stopped.values()) == {0}
    assert seen.steady.failures == [] and seen.steady.done > 20
    assert seen.failed == [] and len(seen.joins) == MAXIMUM - MINIMUM


def only(commands: list[list[str]], *words: str) -> list[str]:
    """The one command that starts `gcloud <words>`."""
    [found] = [c for c in commands if c[1 : 1 + len(words)] == list(words)]
    return found


def test_gcloud_is_driven_as_printed(
    tmp_path: Path, drive: Drive, gcloud: StandInGcloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One VM on a fresh project (the stand-in refuses every call to an API that is not on):
    --apply runs exactly the printed commands, the APIs first; secrets from files, never a PEM on
    a command line; a firewall rule for the tag and the given ranges only."""
    monkeypatch.chdir(tmp_path)
    new_cluster(tmp_path / "certs")
    user_data_file = tmp_path / "ud.yaml"
    args = ["gce", "--project", PROJECT, "--image", "img:1", "--source-range", "198.51.100.0/24",
            "--out", str(user_data_file), "--certs", "certs"]  # fmt: skip
    calls = drive(args).printed
    assert len(calls) == 10
    assert calls[0] == ["gcloud", "services", "enable", *SERVICES, "--project", PROJECT]
    firewall = only(calls, "compute", "firewall-rules", "create")
    assert {("--source-ranges", "198.51.100.0/24"), ("--target-tags", "dask-server")} <= pairs(
        firewall
    )
    vm = pairs(only(calls, "compute", "instances", "create"))
    assert ("--image-family", "cos-stable") in vm
    assert ("--metadata-from-file", f"user-data={user_data_file}") in vm
    assert all("BEGIN" not in arg for c in calls for arg in c)
    files = [p for c in calls for p in pairs(c) if p[0] == "--data-file"]
    assert files == [
        ("--data-file", f"certs/{f}") for f in ("cluster.pem", "cluster-key.pem", "ca.pem")
    ]
    assert "subnets" not in {arg for c in calls for arg in c}  # the VM has an external IP
    assert gcloud.state()["services"] == sorted(SERVICES)


def cluster_args(tmp_path: Path, certs: Path, *more: str) -> list[str]:
    return [*CLUSTER, "--certs", str(certs), "--out", str(tmp_path / "ud.yaml"), *more]


def test_cluster_of_vms_is_driven_as_printed(
    tmp_path: Path, drive: Drive, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """--worker-vms 3 on a fresh project: the APIs, then (--apply only) a look at the project's
    internal DNS, then Private Google Access on the VMs' subnet; a scheduler VM and a group of 3
    worker VMs on COS, no external IP; one firewall rule opens TCP between the cluster's tagged
    VMs only, one 8786/8787 from the client ranges to the scheduler only. --resize and --delete
    are driven as printed too; the delete removes each thing the create made and leaves the APIs
    and Private Google Access on."""
    certs = tmp_path / "certs"
    new_cluster(certs, names=(SCHEDULER_HOST,))
    driven = drive(cluster_args(tmp_path, certs, "--worker-vms", "3"))
    created = driven.printed
    assert driven.applied[:3] == [
        ["gcloud", "services", "enable", *SERVICES, "--project", PROJECT],
        ["gcloud", "compute", "project-info", "describe", "--project", PROJECT,
         "--format", "value(vmDnsSetting)"],
        ["gcloud", "compute", "networks", "subnets", "update", "default", "--project", PROJECT,
         "--region", "us-central1", "--enable-private-ip-google-access"],
    ]  # fmt: skip
    rules = {c[4]: pairs(c) for c in created if c[1:4] == ["compute", "firewall-rules", "create"]}
    assert set(rules) == {"dask-cluster-internal", "dask-cluster-clients"}
    assert {("--allow", "tcp"), ("--source-tags", "dask-cluster"),
            ("--target-tags", "dask-cluster")} <= rules["dask-cluster-internal"]  # fmt: skip
    assert not any(flag == "--source-ranges" for flag, _ in rules["dask-cluster-internal"])
    assert {
        ("--allow", f"tcp:{SCHEDULER_PORT},tcp:{DASHBOARD_PORT}"),
        ("--source-ranges", "198.51.100.0/24"),
        ("--target-tags", "dask-cluster-scheduler"),
    } <= rules["dask-cluster-clients"]
    scheduler = only(created, "compute", "instances", "create")
    template = only(created, "compute", "instance-templates", "create")
    group = only(created, "compute", "instance-groups", "managed", "create")
    assert ("--tags", "dask-cluster,dask-cluster-scheduler") in pairs(scheduler)
    assert ("--tags", "dask-cluster") in pairs(template)
    for vm, role in ((scheduler, "scheduler"), (template, "worker")):
        user_data_file = tmp_path / f"ud-{role}.yaml"
        assert f"DASK_ROLE={role}" in user_data_file.read_text() and "--no-address" in vm
        assert ("--metadata-from-file", f"user-data={user_data_file}") in pairs(vm)
        assert ("--image-family", "cos-stable") in pairs(vm)
    assert {("--size", "3"), ("--template", template[4])} <= pairs(group)
    assert all("BEGIN" not in arg for c in created for arg in c)
    assert gcloud.state()["subnets"]["us-central1/default"]["private_ip_google_access"]
    assert not any(c[1] == "artifacts" or "--provisioning-model" in c for c in created)

    assert main(cluster_args(tmp_path, certs, "--worker-vms", "3", "--external-ip")) == 0
    printed = capsys.readouterr().out
    assert "--no-address" not in printed and "private-ip-google-access" not in printed

    resize = drive(["gce", "--project", PROJECT, "--resize", "5"]).printed
    assert resize == [["gcloud", "compute", "instance-groups", "managed", "resize", group[5],
                       "--project", PROJECT, "--zone", "us-central1-a", "--size", "5"]]  # fmt: skip
    deleted = drive(["gce", "--project", PROJECT, "--delete"]).printed
    assert things(deleted, "delete") == things(created, "create")
    kinds = [c[2] for c in deleted]  # a group's template can go only after the group
    assert kinds.index("instance-groups") < kinds.index("instance-templates")
    left = gcloud.state()
    assert left["things"] == {} and left["bindings"] == []
    assert left["services"] == sorted(SERVICES)
    assert left["subnets"]["us-central1/default"]["private_ip_google_access"]


def test_spot_workers_and_a_private_image_are_driven_as_printed(
    tmp_path: Path, drive: Drive, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """--spot makes the workers' template Spot, deleted on preemption so that the group creates
    the VM again; the scheduler VM stays standard. An Artifact Registry image: the service
    account may read its repository (parsed from --image, in the image's project), and --delete
    takes that right back."""
    certs = tmp_path / "certs"
    new_cluster(certs, names=(SCHEDULER_HOST,))
    own = f"europe-west1-docker.pkg.dev/{PROJECT}/dask/dask-tls:0.1.0"
    created = drive(cluster_args(tmp_path, certs, "--worker-vms", "2", "--spot", "--image", own))
    spot = {("--provisioning-model", "SPOT"), ("--instance-termination-action", "DELETE")}
    assert spot <= pairs(only(created.printed, "compute", "instance-templates", "create"))
    assert "--provisioning-model" not in only(created.printed, "compute", "instances", "create")
    account = f"serviceAccount:dask-cluster@{PROJECT}.iam.gserviceaccount.com"
    reader = ["gcloud", "artifacts", "repositories", "add-iam-policy-binding", "dask",
              "--project", PROJECT, "--location", "europe-west1", "--member", account,
              "--role", "roles/artifactregistry.reader"]  # fmt: skip
    order = created.printed.index
    assert order(only(created.printed, "iam", "service-accounts", "create")) < order(reader)
    assert order(reader) < order(only(created.printed, "compute", "instances", "create"))
    assert ["artifacts repositories", "dask", account, reader[-1]] in gcloud.state()["bindings"]
    deleted = drive(["gce", "--project", PROJECT, "--image", own, "--delete"]).printed
    taken_back = [*reader[:3], "remove-iam-policy-binding", *reader[4:]]
    assert deleted.index(taken_back) < deleted.index(
        only(deleted, "iam", "service-accounts", "delete")
    )
    assert gcloud.state()["bindings"] == []

    assert main(cluster_args(tmp_path, certs, "--worker-vms", "2", "--image", PRIVATE_IMAGE)) == 0
    printed = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    elsewhere = only(printed, "artifacts", "repositories", "add-iam-policy-binding")
    assert ("--project", "images-project") in pairs(elsewhere)


GROUP_PATH = f"projects/{PROJECT}/zones/us-central1-a/instanceGroupManagers/dask-cluster-workers"
ROLE = f"projects/{PROJECT}/roles/dask_cluster_autoscaler"


def test_autoscale_cluster_is_driven_as_printed(
    tmp_path: Path, drive: Drive, gcloud: StandInGcloud
) -> None:
    """--worker-vms 1 --autoscale 1:4: the scheduler VM runs with an account of its own, which
    alone may change the worker group: a custom role of exactly instanceGroupManagers.get and
    .update, granted on the project under a condition naming that one group; both accounts read
    the secrets; the workers' account gets no Compute right. The scheduler's unit carries the
    group, MIN:MAX and the workers per VM (an e2-standard-4: 4, set on the workers too). --delete
    --autoscale takes back all of it but the custom role (bound to no one)."""
    certs = tmp_path / "certs"
    new_cluster(certs, names=(SCHEDULER_HOST,))
    created = drive(
        cluster_args(tmp_path, certs, "--worker-vms", "1", "--autoscale", "1:4")
    ).printed
    scheduler_account = f"dask-cluster-scheduler@{PROJECT}.iam.gserviceaccount.com"
    role = only(created, "iam", "roles", "create")
    assert ("--permissions", "compute.instanceGroupManagers.get,"
            "compute.instanceGroupManagers.update") in pairs(role)  # fmt: skip
    binding = only(created, "projects", "add-iam-policy-binding")
    assert binding[3] == PROJECT and ("--role", ROLE) in pairs(binding)
    assert ("--member", f"serviceAccount:{scheduler_account}") in pairs(binding)
    assert ("--condition", f'expression=resource.name == "{GROUP_PATH}",'
            "title=dask-cluster-workers") in pairs(binding)  # fmt: skip
    assert created.index(role) < created.index(binding)
    vm = only(created, "compute", "instances", "create")
    template = only(created, "compute", "instance-templates", "create")
    assert ("--service-account", scheduler_account) in pairs(vm)
    assert ("--service-account", f"dask-cluster@{PROJECT}.iam.gserviceaccount.com") in pairs(
        template
    )
    assert ("--size", "1") in pairs(
        only(created, "compute", "instance-groups", "managed", "create")
    )
    readers = {c[-3] for c in created if c[1:3] == ["secrets", "add-iam-policy-binding"]}
    workers_account = f"dask-cluster@{PROJECT}.iam.gserviceaccount.com"
    assert readers == {f"serviceAccount:{scheduler_account}", f"serviceAccount:{workers_account}"}
    [project_binding] = [b for b in gcloud.state()["bindings"] if b[0] == "projects"]
    assert project_binding == ["projects", PROJECT, f"serviceAccount:{scheduler_account}", ROLE]
    scheduler_ud = yaml.safe_load((tmp_path / "ud-scheduler.yaml").read_text())
    [run] = [shlex.split(line.removeprefix("ExecStart="))
             for entry in scheduler_ud["write_files"] for line in entry["content"].splitlines()
             if line.startswith("ExecStart=")]  # fmt: skip
    assert {("-e", "AUTOSCALE=1:4"), ("-e", f"AUTOSCALE_GROUP={GROUP_PATH}"),
            ("-e", "AUTOSCALE_WORKERS_PER_VM=4")} <= pairs(run)  # fmt: skip
    assert "NUM_WORKERS=4" in (tmp_path / "ud-worker.yaml").read_text()

    delete = ["gce", "--project", PROJECT, "--autoscale", "1:4", "--delete"]
    deleted = drive(delete).printed
    assert ["gcloud", "projects", "remove-iam-policy-binding", PROJECT, "--member",
            f"serviceAccount:{scheduler_account}", "--role", ROLE, "--all"] in deleted  # fmt: skip
    assert things(deleted, "delete") == things(created, "create") - {
        ("iam", "roles", "dask_cluster_autoscaler")
    }
    left = gcloud.state()
    assert list(left["things"]) == ["iam roles//dask_cluster_autoscaler"]
    assert left["bindings"] == []


def test_autoscale_counts_the_workers_given_per_vm(tmp_path: Path) -> None:
    """--workers 2 on a 4-vCPU machine type: each worker VM runs 2 workers, and the scheduler
    counts 2 per VM."""
    deployment = Deployment(project=PROJECT, image="img", source_ranges=(), worker_vms=1,
                            autoscale=(0, 3), sizing={"NUM_WORKERS": "2"})  # fmt: skip
    [scheduler] = unit_commands(deployment, "scheduler", "ExecStart")
    [worker] = unit_commands(deployment, "worker", "ExecStart")
    assert ("-e", "AUTOSCALE_WORKERS_PER_VM=2") in pairs(scheduler)
    assert [a for a in worker if a.startswith("NUM_WORKERS=")] == ["NUM_WORKERS=2"]
    assert not [a for a in worker if a.startswith("AUTOSCALE")]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--autoscale", "1:4"], "--autoscale"),  # no group to size
        (["--worker-vms", "5", "--autoscale", "1:4"], "--autoscale"),
        (["--worker-vms", "1", "--autoscale", "2:4"], "--autoscale"),
        (["--worker-vms", "1", "--autoscale", "1:4", "--machine-type", "e2-medium"],
         "--autoscale"),
        (["--worker-vms", "1", "--autoscale", "1:4", "--name", "a-cluster-name-21char"], "--name"),
    ],
)  # fmt: skip
def test_autoscale_options_are_refused_first(
    tmp_path: Path, args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--autoscale without a group to size, a MIN:MAX that does not hold --worker-vms, a machine
    type whose vCPUs its name does not say (without --workers), a --name too long for the
    scheduler's own account: one line naming the option, exit 78, nothing written."""
    assert main([*cluster_args(tmp_path, tmp_path / "none"), *args]) == 78
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert out.err.startswith(f"dask-tls: {option}:")
    assert list(tmp_path.glob("ud*")) == []
    assert main(["gce", "--project", PROJECT, "--autoscale", "1:4", "--resize", "2"]) == 78


@pytest.mark.parametrize("bounds", ["4", "4:1", "0:0", "1:1001", "a:b", "1:"])
def test_autoscale_bounds_must_be_min_max(bounds: str, capsys: pytest.CaptureFixture[str]) -> None:
    """MIN:MAX, 0 <= MIN <= MAX, 1 <= MAX <= 1000: anything else is a usage error that says so."""
    with pytest.raises(SystemExit) as usage:
        main([*CLUSTER, "--worker-vms", "1", "--autoscale", bounds])
    assert usage.value.code == 2
    assert "is not MIN:MAX worker VMs" in capsys.readouterr().err


def things(commands: list[list[str]], action: str) -> set[tuple[str, ...]]:
    """(kind..., name) of what `commands` create or delete; a service account by its ID."""
    found = set()
    for command in commands:
        if action in command:
            at = command.index(action)
            names = itertools.takewhile(lambda arg: not arg.startswith("--"), command[at + 1 :])
            found |= {(*command[1:at], name.split("@")[0]) for name in names}
    return found


def apply_cluster(tmp_path: Path, *more: str) -> int:
    """`gce --worker-vms 2 --apply` with certificates that name the scheduler (made once)."""
    certs = tmp_path / "certs"
    if not certs.exists():
        new_cluster(certs, names=(SCHEDULER_HOST,))
    return main(cluster_args(tmp_path, certs, "--worker-vms", "2", *more, "--apply"))


DELETE = f"gce --project {PROJECT} --name dask-cluster --zone us-central1-a --delete --apply"


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        (f"us-docker.pkg.dev/{PROJECT}/dask/dask-tls:1", True),
        (f"gcr.io/{PROJECT}/dask-tls:1", True),
        ("europe-docker.pkg.dev/another-project/dask/dask-tls:1", False),
        ("dask-tls:1", False),
    ],
)
def test_a_fresh_project_gets_the_apis_it_uses_and_nothing_more(
    tmp_path: Path, drive: Drive, gcloud: StandInGcloud, image: str, registry: bool
) -> None:
    """The plan's first step enables Compute Engine, Secret Manager and IAM, and Artifact
    Registry only for an image in the project's own registry; after --apply on a fresh project
    exactly those are on."""
    certs = tmp_path / "certs"
    new_cluster(certs, names=(SCHEDULER_HOST,))
    printed = drive(cluster_args(tmp_path, certs, "--worker-vms", "2", "--image", image)).printed
    services = [*SERVICES, *(["artifactregistry.googleapis.com"] if registry else [])]
    assert printed[0] == ["gcloud", "services", "enable", *services, "--project", PROJECT]
    assert gcloud.state()["services"] == sorted(services)


def test_nat_instead_of_private_google_access_and_delete_removes_it(
    tmp_path: Path, drive: Drive, gcloud: StandInGcloud
) -> None:
    """--nat: a Cloud Router and a NAT of the cluster's own for its subnet, right after the APIs,
    and Private Google Access left as it was; `--delete --nat` removes the router, and with it
    its NAT, last."""
    certs = tmp_path / "certs"
    new_cluster(certs, names=(SCHEDULER_HOST,))
    created = drive(cluster_args(tmp_path, certs, "--worker-vms", "2", "--nat")).printed
    assert created[1:3] == [
        ["gcloud", "compute", "routers", "create", "dask-cluster-router", "--project", PROJECT,
         "--network", "default", "--region", "us-central1"],
        ["gcloud", "compute", "routers", "nats", "create", "dask-cluster-nat", "--project", PROJECT,
         "--router", "dask-cluster-router", "--region", "us-central1",
         "--auto-allocate-nat-external-ips", "--nat-custom-subnet-ip-ranges", "default"],
    ]  # fmt: skip
    state = gcloud.state()
    assert "compute routers nats/dask-cluster-router/dask-cluster-nat" in state["things"]
    assert not state["subnets"]["us-central1/default"]["private_ip_google_access"]
    deleted = drive(["gce", "--project", PROJECT, "--nat", "--delete"]).printed
    assert deleted[-1] == ["gcloud", "compute", "routers", "delete", "dask-cluster-router",
                           "--project", PROJECT, "--quiet", "--region", "us-central1"]  # fmt: skip
    assert gcloud.state()["things"] == {}


def test_delete_never_turns_off_what_the_project_had_on(
    tmp_path: Path, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a project whose APIs and Private Google Access were on before, create and delete leave
    them on: no printed or applied step of --delete disables an API or Private Google Access (it
    removes things by the names the plan gave them, and nothing else)."""
    on = {"private_ip_google_access": True}
    gcloud.set(services=sorted(SERVICES), subnets={"us-central1/default": on})
    assert apply_cluster(tmp_path) == 0
    assert main(["gce", "--project", PROJECT, "--delete"]) == 0
    printed = capsys.readouterr().out
    assert main(["gce", "--project", PROJECT, "--delete", "--apply"]) == 0
    state = gcloud.state()
    assert state["services"] == sorted(SERVICES) and state["subnets"]["us-central1/default"] == on
    assert state["things"] == {}
    for words in (printed.split(), [arg for call in gcloud.calls() for arg in call]):
        assert "disable" not in words and "--no-enable-private-ip-google-access" not in words


@pytest.mark.parametrize("more", [[], ["--nat"], ["--autoscale", "1:4"]], ids=str)
def test_a_second_apply_changes_nothing_and_fails_nowhere(
    tmp_path: Path, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str], more: list[str]
) -> None:
    """A second --apply against the stand-in holding the first run's project: every create finds
    its thing there (its describe says so, whatever gcloud's error was; a NAT's is not "already
    exists") and keeps it as it is, one line each; the APIs, Private Google Access and the
    bindings are set again to what they are; nothing is deleted; exit 0, the project unchanged
    (with --nat, and with --autoscale: its custom role and conditional binding too)."""
    assert apply_cluster(tmp_path, *more) == 0
    first = gcloud.state()
    creates = [c for c in gcloud.calls() if "create" in c]
    gcloud.forget()
    capsys.readouterr()
    assert apply_cluster(tmp_path, *more) == 0
    assert gcloud.state() == first
    calls = gcloud.calls()
    assert [c for c in calls if "create" in c] == creates
    assert not [c for c in calls if "delete" in c]
    kept = [line for line in capsys.readouterr().err.splitlines() if line.startswith("already")]
    assert len(kept) == len(creates) and "ERROR" not in "".join(kept)
    assert "already there, kept as it is: secrets dask-cluster-cert" in kept


def retry_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("IAM does not know")]


def test_binding_for_a_new_account_is_retried_while_iam_propagates(
    tmp_path: Path, gcloud: StandInGcloud, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The stand-in answers "does not exist" twice to the first binding, as IAM does for an
    account created a moment before: --apply waits 2 s, then 4 s, one line each, and the third
    try succeeds; the run goes on to the end."""
    waits: list[float] = []
    monkeypatch.setattr(gcloud_apply, "sleep", waits.append)
    gcloud.set(unpropagated=2)
    assert apply_cluster(tmp_path) == 0
    assert retry_lines(capsys.readouterr().err) == [
        "IAM does not know the new service account yet: try 2 of 7 in 2 s",
        "IAM does not know the new service account yet: try 3 of 7 in 4 s",
    ]
    assert waits == [2, 4]
    calls = gcloud.calls()
    first_binding = only(calls[:6], "secrets", "add-iam-policy-binding")
    assert calls.count(first_binding) == 3
    assert len(gcloud.state()["bindings"]) == 3
    assert calls[-1][1:5] == ["compute", "instance-groups", "managed", "create"]


def test_binding_retries_are_bounded_and_stop_with_the_delete(
    tmp_path: Path, gcloud: StandInGcloud, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """An account IAM never comes to know: after 7 tries (91 s of waiting on a real project)
    --apply stops at the binding and names the --delete that removes what was made."""
    waits: list[float] = []
    monkeypatch.setattr(gcloud_apply, "sleep", waits.append)
    gcloud.set(unpropagated=100)
    assert apply_cluster(tmp_path) == 1
    err = capsys.readouterr().err
    assert waits == list(gcloud_apply.IAM_RETRY_DELAYS) and sum(waits) == 90
    assert len(retry_lines(err)) == 6
    binding = gcloud.calls()[-1]
    assert binding[1:3] == ["secrets", "add-iam-policy-binding"]
    assert (
        err.splitlines()[-1]
        == f"gcloud failed at: {shlex.join(binding)}; {DELETE} removes what was made"
    )


def test_any_other_failure_stops_and_names_the_delete(
    tmp_path: Path, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """A create that fails with its thing not there (a quota, here) stops --apply at once with
    gcloud's error and the --delete that removes what was made; nothing after it runs."""
    quota = "QUOTA_EXCEEDED: Quota 'CPUS' exceeded. Limit: 8.0 in region us-central1."
    gcloud.set(refuse={"compute instances create": quota})
    assert apply_cluster(tmp_path) == 1
    err = capsys.readouterr().err
    calls = gcloud.calls()
    assert calls[-2][1:4] == ["compute", "instances", "create"]
    assert calls[-1][1:4] == ["compute", "instances", "describe"]  # is it there? no
    assert quota in err
    last = f"gcloud failed at: {shlex.join(calls[-2])}; {DELETE} removes what was made"
    assert err.splitlines()[-1] == last


def test_dns_global_names_the_scheduler_without_its_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dns global (projects still on global internal DNS): the workers connect to
    NAME-scheduler.c.PROJECT.internal, and the cluster certificate must name that."""
    host = f"dask-cluster-scheduler.c.{PROJECT}.internal"
    cluster = Deployment(project=PROJECT, image="img", source_ranges=(), worker_vms=2, dns="global")
    assert cluster.scheduler_host == host
    [run] = unit_commands(cluster, "worker", "ExecStart")
    assert f"DASK_SCHEDULER_ADDRESS=tls://{host}:{SCHEDULER_PORT}" in run
    certs = tmp_path / "certs"
    new_cluster(certs, names=(SCHEDULER_HOST,))
    assert main(cluster_args(tmp_path, certs, "--worker-vms", "2", "--dns", "global")) == 78
    assert f"does not name {host}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "dns", "refused"),
    [
        ("GLOBAL_DEFAULT", "zonal", True),
        ("ZONAL_ONLY", "global", True),
        ("ZONAL_DEFAULT", "zonal", False),
        ("GLOBAL_DEFAULT", "global", False),
        ("", "zonal", False),
    ],
)
def test_apply_reads_the_projects_dns_before_making_anything(
    tmp_path: Path, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str],
    setting: str, dns: str, refused: bool,
) -> None:  # fmt: skip
    """Once the APIs are on, --apply reads the project's internal DNS type: if its VMs get the
    other kind of name (the workers would never find the scheduler), one line gives the --dns
    to use and the certificate to make, exit 78, nothing made; otherwise (or if the project says
    nothing) the run goes on."""
    host = Deployment(project=PROJECT, image="", source_ranges=(), dns=dns)
    certs = tmp_path / "certs"
    new_cluster(certs, names=(host.scheduler_host,))
    gcloud.set(dns=setting)
    code = main(cluster_args(tmp_path, certs, "--worker-vms", "2", "--dns", dns, "--apply"))
    err = capsys.readouterr().err
    if refused:
        other = "global" if dns == "zonal" else "zonal"
        assert code == 78 and err.splitlines()[-1].startswith("dask-tls: --dns: project ")
        assert f"run again with --dns {other}" in err
        assert [c[1:3] for c in gcloud.calls()] == [
            ["services", "enable"],
            ["compute", "project-info"],
        ]
        assert gcloud.state()["things"] == {}
    else:
        assert code == 0 and gcloud.state()["things"]


@pytest.mark.parametrize(
    ("image", "nat", "warned"),
    [("ghcr.io/me/dask-tls:1", False, True), ("ghcr.io/me/dask-tls:1", True, False),
     ("europe-docker.pkg.dev/p-123456/dask/dask-tls:1", False, False)],
)  # fmt: skip
def test_an_image_private_google_access_cannot_reach_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], image: str, nat: bool, warned: bool
) -> None:
    """Private Google Access reaches Google's registries only: an image elsewhere, with no NAT
    and no external IP, gets a warning that names --nat."""
    args = cluster_args(tmp_path, tmp_path / "certs", "--worker-vms", "2", "--image", image)
    assert main([*args, *(["--nat"] if nat else [])]) == 0
    warning = f"warning: {image} is not on a Google registry"
    assert (warning in capsys.readouterr().err) == warned


@pytest.mark.parametrize("apply", [False, True])
def test_cluster_certificate_must_name_the_scheduler(
    tmp_path: Path, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str], apply: bool
) -> None:
    """A cluster.pem that does not name the scheduler's internal DNS name is refused in one line
    that gives the `certs new` to run; nothing is written, gcloud never runs."""
    certs = tmp_path / "certs"
    new_cluster(certs, names=("scheduler", "10.0.0.2"))
    args = cluster_args(tmp_path, certs, "--worker-vms", "2", *(["--apply"] if apply else []))
    assert main(args) == 78
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert f"does not name {SCHEDULER_HOST}" in out.err
    assert f"certs new --out {certs} --name {SCHEDULER_HOST}" in out.err
    assert gcloud.calls() == [] and list(tmp_path.glob("ud*")) == []


def test_cluster_without_certificates_says_which_to_make(
    tmp_path: Path, gcloud: StandInGcloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no cluster.pem yet the commands are printed with the `certs new` that fits them;
    --apply refuses in one line, before gcloud runs."""
    args = cluster_args(tmp_path, tmp_path / "none", "--worker-vms", "2")
    assert main(args) == 0
    assert f"certs new --out {tmp_path / 'none'} --name {SCHEDULER_HOST}" in capsys.readouterr().err
    assert main([*args, "--apply"]) == 78
    out = capsys.readouterr()
    assert len(out.err.strip().splitlines()) == 1 and gcloud.calls() == []


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "Dask_1"],
        ["--name", "dask"],
        ["--project", "My Project", "--worker-vms", "1"],
        ["--project", "My_Project"],
        ["--project", "my-project-"],
        ["--project", "1project"],
        ["--zone", "uscentral1a"],
        ["--zone", "us-central1"],
        ["--zone", "US-CENTRAL1-A"],
        ["--source-range", "everywhere"],
        ["--nat"],
        ["--nat", "--external-ip", "--worker-vms", "1"],
        ["--image", "us-docker.pkg.dev/dask-tls:0.1.0"],
        ["--image", "gcr.io/dask-tls"],
        ["--spot"],
    ],
)
def test_options_gcloud_would_refuse_are_refused_first(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A --name that cannot be a service account ID, a --project that is not a project ID, a
    --zone that is not a zone's name (for one VM as for many, --resize and --delete), a
    --source-range that is no range, --nat for VMs with external IPs, a Google registry's --image
    that names no repository, --spot for the one VM that runs the scheduler: one line naming the
    option, exit 78, nothing printed on stdout."""
    for command in ([*CLUSTER, *args], ["gce", "--project", PROJECT, *args, "--delete"]):
        if args[0] in ("--source-range", "--nat", "--spot") and "--delete" in command:
            continue  # not a deletion's options
        assert main(command) == 78
        out = capsys.readouterr()
        assert out.out == "" and len(out.err.strip().splitlines()) == 1
        assert out.err.startswith(f"dask-tls: {args[0]}:")


def test_legacy_path_is_marked_deprecated(capsys: pytest.CaptureFixture[str]) -> None:
    """--legacy prints create-with-container with the base64 env file, and says it is dead."""
    assert (
        main(
            [
                "gce",
                "--legacy",
                "--project",
                PROJECT,
                "--image",
                "i",
                "--source-range",
                "10.0.0.0/8",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert (
        "create-with-container" in out.out and "--container-env-file certs/cluster.env" in out.out
    )
    assert "DEPRECATED" in out.err and "2026-07-31" in out.err


def test_a_revocation_list_is_the_optional_fourth_secret(tmp_path: Path) -> None:
    """With a crl.pem from `certs revoke` in --certs, the deployment carries it as a fourth secret:
    made from the file, fetched at start and on `systemctl reload`, given to the container as
    DASK_CLUSTER_CRL_FILE; without one, three secrets as before."""
    import argparse

    from entrypoint.tools.certs import new_cluster, revoke
    from entrypoint.tools.cli import parser
    from entrypoint.tools.gce import docker_run, fetch_script
    from entrypoint.tools.gce_tool import gce_deployment

    certs = tmp_path / "certs"
    new_cluster(certs)
    args: argparse.Namespace = parser().parse_args(
        ["gce", "--project", PROJECT, "--image", "img:1", "--source-range", "198.51.100.0/24",
         "--certs", str(certs)]
    )  # fmt: skip
    assert "crl" not in gce_deployment(args, many=False).secrets
    revoke(certs, (), ())
    deployment = gce_deployment(args, many=False)
    assert deployment.secrets["crl"] == "dask-cluster-crl"
    assert "fetch dask-cluster-crl crl" in fetch_script(deployment)
    assert "DASK_CLUSTER_CRL_FILE=/run/secrets/dask-tls/crl" in docker_run(deployment)


def readme_blocks(title: str) -> list[list[str]]:
    """The lines of each fenced block in the README's section `title`, in order."""
    text = README.read_text()
    section = text[text.index(f"\n## {title}\n") :].split("\n## ")[1]
    return [block.splitlines() for block in re.findall(r"```\w*\n(.*?)```", section, re.DOTALL)]


def readme_gce_runs(block: list[str]) -> list[tuple[list[str], list[str]]]:
    """Each `docker run ... IMAGE gce ...` command of a README block (continued lines joined), as
    the tool's arguments, with the `# ` lines that follow it."""
    runs: list[tuple[list[str], list[str]]] = []
    for line in "\n".join(block).replace("\\\n", " ").splitlines():
        if line.startswith("# ") and runs:
            runs[-1][1].append(line.removeprefix("# "))
        elif " gce " in line:
            words = shlex.split(line)
            runs.append((words[words.index("gce") :], []))
    return runs


def test_readme_gce_sections_show_what_gce_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's GCE sections show, line for line and in the order printed, what their own
    commands print: one VM; a 3-worker cluster (the APIs and Private Google Access first); the
    lines --nat puts in Private Google Access's place; the resize and the delete."""
    monkeypatch.chdir(tmp_path)

    def printed(args: list[str]) -> list[str]:
        assert main(args) == 0
        return capsys.readouterr().out.splitlines()

    one = readme_blocks("Google Compute Engine")
    [(args, _)] = readme_gce_runs(one[0])
    assert printed(args) == one[1]
    many = readme_blocks("Many VMs")
    [(args, _)] = readme_gce_runs(many[0])
    assert printed(args) == many[1]
    assert printed([*args, "--nat"])[1:3] == many[2]
    [changes] = [runs for block in many if len(runs := readme_gce_runs(block)) == 2]
    for args, shown in changes:
        assert printed(args) == shown and shown


def test_readme_autoscaling_shows_what_gce_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Autoscaling section: each command it shows is one that its `gce` command
    prints, and the damping it tabulates is DAMPING's."""
    from entrypoint.autoscaling.policy import DAMPING

    monkeypatch.chdir(tmp_path)
    blocks = readme_blocks("Autoscaling")
    [(args, _)] = readme_gce_runs(blocks[0])
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert blocks[1] and set(blocks[1]) <= set(printed)
    section = README.read_text().split("\n## Autoscaling\n")[1].split("\n## ")[0]
    cells = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    rows = {row[0].strip("| "): row[1] for row in cells if row[1].endswith(" s")}
    assert rows == {
        "a look at the demand every": f"{DAMPING.interval:g} s",
        "shrink only down to the most VMs wanted over the last": f"{DAMPING.window:g} s",
        "no shrink for this long after a growth": f"{DAMPING.after_growth:g} s",
        "one shrink may spend moving results": f"{DAMPING.retire_budget:g} s",
    }
    assert "a quarter of the VMs serving" in section and DAMPING.step == 0.25

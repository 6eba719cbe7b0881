"""Google Compute Engine VMs rehearsed on this host's Docker engine (Google Cloud cannot be reached
from here): the rendered units' lines run as containers on one Docker network, their fetch script
against a stand-in for the metadata server and Secret Manager on loopback (`vm_environment`), one
`RehearsedVM` per VM. `rehearse_autoscaling` adds a managed group of worker VMs the scheduler's
autoscaler sizes: tests/compute_stand_in.py plays the Compute API, each instance a worker VM's
unit run as a container named after it. Used by tests/test_gce.py and by `make bench`."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import operator
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import yaml
from distributed import Client

from entrypoint.autoscaling.scaler import instance_of
from entrypoint.contract import SCHEDULER_PORT
from entrypoint.tools.certs import new_cluster
from entrypoint.tools.client import connect
from entrypoint.tools.gce import SERVICE, Deployment, user_data
from tests.compute_stand_in import Call, ManagedGroup
from tests.compute_stand_in import serve as serve_group
from tests.containers import DOCKER, docker, remove_container

PROJECT, TOKEN = "test-project", "test-token"


class FakeGoogle(BaseHTTPRequestHandler):
    """The metadata server and Secret Manager's `versions/latest:access`, as curl sees them."""

    secrets: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path.startswith("/computeMetadata/v1/"):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.answer(403, b"missing Metadata-Flavor")
            if self.path.endswith("/project/project-id"):
                return self.answer(200, PROJECT.encode())
            token = {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            return self.answer(200, json.dumps(token).encode())
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, b"no token")
        name = self.path.split("/secrets/")[1].split("/")[0]
        payload = {"data": base64.b64encode(self.secrets[name]).decode(), "dataCrc32c": "0"}
        body = json.dumps({"name": name, "payload": payload}, indent=2)  # pretty, as Google's
        return self.answer(200, body.encode())

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


STAND_IN_IPTABLES = """#!/bin/sh
# records each call; -C (check) finds the rule once -A (append) has added it
echo "$*" >> "$0.log"
case "$2" in -C) [ -e "$0.rule" ] ;; -A) touch "$0.rule" ;; esac
"""


@contextlib.contextmanager
def vm_environment(directory: Path) -> Iterator[dict[str, str]]:
    """What the units' scripts get here in place of a VM's: the metadata server and Secret
    Manager are the stand-in on loopback, `iptables` a stand-in that records its calls in
    DIRECTORY/vm-bin/iptables.log (this host's firewall stays as it is)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGoogle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    iptables = directory / "vm-bin" / "iptables"
    iptables.parent.mkdir(exist_ok=True)
    iptables.write_text(STAND_IN_IPTABLES)
    iptables.chmod(0o755)
    env = {**os.environ, "PATH": f"{iptables.parent}:{os.environ['PATH']}",
           "METADATA_URL": f"{url}/computeMetadata/v1",
           "SECRET_MANAGER_URL": f"{url}/v1"}  # fmt: skip
    assert shutil.which("iptables", path=env["PATH"]) == str(iptables)
    try:
        yield env
    finally:
        server.shutdown()


def rendered(deployment: Deployment, role: str = "all") -> dict[str, str]:
    """path -> content of each file the user-data writes."""
    config = yaml.safe_load(user_data(deployment, role))
    return {entry["path"]: entry["content"] for entry in config["write_files"]}


def unit_commands(deployment: Deployment, role: str, key: str) -> list[list[str]]:
    """The commands of the systemd unit's `key=` lines (ExecStart, ExecReload, ...), in order."""
    lines = rendered(deployment, role)[SERVICE].splitlines()
    return [
        shlex.split(line.removeprefix(f"{key}=")) for line in lines if line.startswith(key + "=")
    ]


def pairs(command: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(command))


def on_this_host(command: list[str]) -> list[str]:
    return [DOCKER, *command[1:]] if command[0] == "/usr/bin/docker" else command


@dataclass
class RehearsedVM:
    """One VM as a container on this host: its fetch script and secrets directory of its own
    (run as root, as the VM's systemd does), its unit's lines run as rendered."""

    deployment: Deployment
    role: str
    process: subprocess.Popen[str] | None = None

    @property
    def log(self) -> Path:
        return Path(self.deployment.script).with_name("docker-run.log")

    def boot(self, env: dict[str, str], network: str = "", options: tuple[str, ...] = ()) -> None:
        """cloud-init writes the scripts; systemd runs the unit's ExecStartPre lines, then its
        ExecStart, here on `network` where the VM would use the host's network (a worker) or
        publish ports (the scheduler, which answers there to its internal DNS name), with
        `options` for `docker run` (a hostname, as a VM's; variables)."""
        for path, content in rendered(self.deployment, self.role).items():
            if path != SERVICE:
                Path(path).parent.mkdir(exist_ok=True)
                Path(path).write_text(content)
        for command in unit_commands(self.deployment, self.role, "ExecStartPre"):
            may_fail = command[0].startswith("-")  # systemd's prefix: a failure is no failure
            command[0] = command[0].removeprefix("-")
            subprocess.run(on_this_host(command), env=env, check=not may_fail, timeout=30,
                           capture_output=may_fail)  # fmt: skip
        [command] = unit_commands(self.deployment, self.role, "ExecStart")
        assert command[:2] == ["/usr/bin/docker", "run"]
        if network and "--network" in command:
            command[command.index("--network") + 1] = network
        elif network:
            alias = self.deployment.scheduler_host
            command[2:2] = ["--network", network, "--network-alias", alias]
        assert ("--network", "host") not in pairs(command)
        command[2:2] = options
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                on_this_host(command), stdout=log, stderr=subprocess.STDOUT, text=True
            )

    def wait_until_running(self, seconds: float = 60) -> None:
        """Until its container runs (`docker run` may not have made it yet)."""
        deadline = time.monotonic() + seconds
        running = "{{.State.Running}}"
        while docker("inspect", "-f", running, self.deployment.container, check=False).stdout != (
            "true\n"
        ):
            assert self.running(), self.log.read_text()
            assert time.monotonic() < deadline, f"not running in {seconds:.0f} s"
            time.sleep(0.1)

    def reload(self, env: dict[str, str]) -> None:
        """`systemctl reload`: the unit's ExecReload lines, in order."""
        for command in unit_commands(self.deployment, self.role, "ExecReload"):
            subprocess.run(on_this_host(command), env=env, check=True, timeout=30)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, certs: Path) -> Client:
        """A client at the container's address (connection refused, and retried, until the
        scheduler listens; the published port's proxy would take the connection and drop it)."""
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        deadline = time.monotonic() + 60
        while not (
            ip := docker(
                "inspect", "-f", template, self.deployment.container, check=False
            ).stdout.strip()
        ):
            assert self.running(), self.log.read_text()
            assert time.monotonic() < deadline, f"no container in 60 s:\n{self.log.read_text()}"
            time.sleep(0.25)
        return connect(f"tls://{ip}:{SCHEDULER_PORT}", certs, timeout="60s")

    def workers(self, client: Client) -> list[str]:
        """The addresses of the workers in this VM's container (they listen on its IP)."""
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        ip = docker("inspect", "-f", template, self.deployment.container).stdout.strip()
        return [a for a in client.scheduler_info()["workers"] if f"//{ip}:" in a]

    def file(self, path: str) -> str:
        container = self.deployment.container
        return docker("exec", container, "/usr/bin/env", "-i", "cat", path).stdout

    def stop(self) -> int:
        """`systemctl stop`: the unit's ExecStop lines; the exit code of its `docker run`; fails
        with its log if it does not end."""
        for command in unit_commands(self.deployment, self.role, "ExecStop"):
            subprocess.run(on_this_host(command), check=True, timeout=60, capture_output=True)
        assert self.process is not None
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after 30 s:\n{self.log.read_text()}") from None

    def remove(self) -> None:
        remove_container(self.deployment.container)
        docker("volume", "rm", "-f", self.deployment.scratch_volume, check=False)
        if self.process:
            self.process.kill()


def serve(certs: Path) -> None:
    """Hands `certs`' cluster material to the stand-in Secret Manager, under the default names."""
    FakeGoogle.secrets = {
        "dask-cluster-cert": (certs / "cluster.pem").read_bytes(),
        "dask-cluster-key": (certs / "cluster-key.pem").read_bytes(),
        "dask-cluster-ca": (certs / "ca.pem").read_bytes(),
    }


def on_vm(deployment: Deployment, directory: Path, vm: str) -> Deployment:
    """`deployment` as one VM rehearsed here: names and paths of its own."""
    name = f"dask-tls-test-{os.getpid()}-gce-{vm}"
    return replace(
        deployment, container=name, scratch_volume=f"{name}-scratch",
        secrets_dir=str(directory / vm / "run"), script=str(directory / vm / "fetch-secrets.sh"),
        ports=("127.0.0.1:0", "127.0.0.1:0"),
    )  # fmt: skip


# The autoscaler, rehearsed: a scheduler VM that sizes a managed group of worker VMs

MINIMUM, MAXIMUM = 1, 4  # worker VMs
BURST = 300  # one-second tasks
PERSISTED = 40  # results of 1 MiB of random bytes held across the grown group
# the damping the rehearsal gives the scheduler through dask's config (README, Autoscaling):
# short, so that it shrinks in seconds rather than minutes
DAMPING = {"INTERVAL": "1", "WINDOW": "10", "AFTER_GROWTH": "10"}
RELAY_PORT = 9180  # the stand-in, on the scheduler container's own loopback
# A TCP-to-Unix-socket relay in the scheduler container's network namespace (a second container
# sharing it): the scheduler reaches the stand-in at 127.0.0.1:RELAY_PORT of its own, as a VM
# reaches its metadata server, and the stand-in listens on no network at all.
RELAY = """
import asyncio, sys
port, path = int(sys.argv[1]), sys.argv[2]
async def pipe(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
async def handle(reader, writer):
    upstream = await asyncio.open_unix_connection(path)
    await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))
async def main():
    async with await asyncio.start_server(handle, "127.0.0.1", port) as server:
        await server.serve_forever()
asyncio.run(main())
"""


def on_instance(deployment: Deployment, directory: Path, instance: str) -> Deployment:
    """`deployment` as the worker VM `instance` of its group: a container named after it."""
    return replace(
        deployment, container=instance, scratch_volume=f"{instance}-scratch",
        secrets_dir=str(directory / instance / "run"),
        script=str(directory / instance / "fetch-secrets.sh"),
    )  # fmt: skip


@dataclass
class ContainerVMs:
    """The stand-in group's instances as containers: an instance's boot runs the worker unit's
    lines (its fetch script, then its `docker run` with the instance's name as the container's
    name and hostname: the VM's); its halt is the unit's stop (`docker stop -t 25`: the container
    drains), as a VM's shutdown runs it, then the container and its volume are gone."""

    cluster: Deployment
    directory: Path
    env: dict[str, str]
    network: str
    vms: dict[str, RehearsedVM] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # when its `docker run` began
    stopped: dict[str, int] = field(default_factory=dict)  # its `docker run`'s exit code
    lock: threading.Lock = field(default_factory=threading.Lock)

    def boot(self, instance: str) -> None:
        vm = RehearsedVM(on_instance(self.cluster, self.directory, instance), "worker")
        with self.lock:
            self.vms[instance] = vm
        vm.boot(self.env, self.network, options=("--hostname", instance))
        self.started[instance] = time.monotonic()

    def halt(self, instance: str) -> None:
        vm = self.vms[instance]
        try:
            self.stopped[instance] = vm.stop()
        finally:
            vm.remove()

    def remove_all(self) -> None:
        for vm in list(self.vms.values()):
            vm.remove()


@dataclass
class Steady:
    """A small task every half second, from a thread, for as long as the rehearsal runs: the
    cluster keeps computing throughout (its failures recorded, for the test to assert none)."""

    client: Client
    done: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stop.wait(0.5):
            number += 1
            try:
                future = self.client.submit(operator.add, number, 1, pure=False, priority=100)
                if future.result(timeout=60) == number + 1:
                    self.done += 1
                else:
                    self.failures.append(f"{number} + 1 gave {future.result()}")
            except Exception as error:  # recorded: the test asserts there is none
                self.failures.append(repr(error))


@dataclass
class Rehearsed:
    """What the rehearsal saw (the test asserts on it; `make bench` reports its times)."""

    calls: list[Call]
    scheduler_log: str
    burst_to_first_added: float  # seconds from the burst to the first added VM's worker registered
    joins: list[float]  # per added VM: seconds from its `docker run` to its worker registered
    idle_to_minimum: float  # seconds from the burst's last result to the group back at MINIMUM
    largest: int  # the most instances the group held at once
    before: list[bytes]  # the persisted results, at the maximum
    after: list[bytes]  # the same, back at the minimum
    held_on: set[str]  # the instances that held them at the maximum
    held_at_the_end: set[str]
    left: list[str]  # the group's instances at the end
    containers: list[str]  # worker containers of the group's VMs still on the engine
    stopped: dict[str, int]  # each halted VM's `docker run` exit code
    steady: Steady
    failed: list[str]  # what the stand-in's boots and halts raised


def rehearse_autoscaling(
    image: str, directory: Path, env: dict[str, str], faults: dict[str, list[int]]
) -> Rehearsed:
    """`gce --worker-vms 1 --autoscale 1:4`, its units run here: the scheduler VM's container
    (its autoscaler talks to the stand-in Compute API and metadata server through the variables
    Google's own clients honour), the group's VMs as containers. A burst of one-second tasks, then
    results persisted across the grown group, then idle until the group is back at its minimum.
    `faults` go to the stand-in (e.g. {"resize": [503, 503]})."""
    name = f"rehearsal-{os.getpid()}"
    cluster = Deployment(project=PROJECT, image=image, source_ranges=(), name=name,
                         worker_vms=MINIMUM, autoscale=(MINIMUM, MAXIMUM),
                         sizing={"NUM_WORKERS": "1"})  # fmt: skip
    certs = directory / "certs"
    new_cluster(certs, names=(cluster.scheduler_host,))
    serve(certs)
    network = f"{name}-network"
    docker("network", "create", network)
    vms = ContainerVMs(cluster, directory, env, network)
    group = ManagedGroup(PROJECT, cluster.zone, cluster.group, f"{name}-worker",
                         boot=vms.boot, halt=vms.halt, faults=faults)  # fmt: skip
    (directory / "google").mkdir()
    server, socket = serve_group(group, str(directory / "google" / "api.sock"))
    scheduler = RehearsedVM(on_vm(cluster, directory, "scheduler"), "scheduler")
    relay = f"{scheduler.deployment.container}-google"
    try:
        group.resize(MINIMUM)  # the group as `instance-groups managed create --size 1` made it
        scheduler.boot(env, network, options=scheduler_options())
        scheduler.wait_until_running()
        docker("run", "-d", "--rm", "--name", relay, "--network",
               f"container:{scheduler.deployment.container}", "--user", "0:0",
               "-v", f"{Path(socket).parent}:/google", "--entrypoint", "/opt/venv/bin/python",
               image, "-c", RELAY, str(RELAY_PORT), "/google/api.sock")  # fmt: skip
        with scheduler.client(certs) as client:
            return _scenario(client, group, vms, scheduler)
    finally:
        scheduler.remove()
        remove_container(relay)
        vms.remove_all()
        docker("network", "rm", network, check=False)
        server.shutdown()


def scheduler_options() -> tuple[str, ...]:
    """Where the scheduler finds the stand-in, as google-auth and gcloud let a user say it, and
    the rehearsal's damping, as dask's config takes it."""
    variables = {
        "GCE_METADATA_HOST": f"127.0.0.1:{RELAY_PORT}",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": f"http://127.0.0.1:{RELAY_PORT}/compute/v1/",
        **{f"DASK_DASK_TLS__AUTOSCALE__{key}": value for key, value in DAMPING.items()},
    }
    return tuple(arg for k, v in variables.items() for arg in ("-e", f"{k}={v}"))


def _scenario(
    client: Client, group: ManagedGroup, vms: ContainerVMs, scheduler: RehearsedVM
) -> Rehearsed:
    def one_second(number: int) -> int:  # nested: sent by value, as cloudpickle does
        time.sleep(1)
        return number

    def workers_by_instance() -> dict[str, str]:
        """{instance: the address of its worker}, for the group's instances."""
        info = client.scheduler_info(n_workers=-1)["workers"]
        return {vm: address for address, worker in info.items()
                if (vm := instance_of(worker["name"], list(group.instances)))}  # fmt: skip

    def retired(names: list[str]) -> dict[str, str]:
        info = client.scheduler_info(n_workers=-1)["workers"].values()
        return {w["name"]: w["status"] for w in info if instance_of(w["name"], names)}

    group.on_delete = retired
    client.wait_for_workers(MINIMUM, timeout=180)
    first = set(group.instances)
    steady = Steady(client)
    background = threading.Thread(target=steady.run, daemon=True)
    background.start()
    try:
        began = time.monotonic()
        burst = client.map(one_second, range(BURST), pure=False)
        registered: dict[str, float] = {}
        largest = 0
        while len(registered) < MAXIMUM or len(group.instances) < MAXIMUM:
            _in_time(began, 180, scheduler, f"the group at {MAXIMUM}, each VM's worker in")
            for vm in workers_by_instance():
                registered.setdefault(vm, time.monotonic())
            largest = max(largest, len(group.instances))
            time.sleep(0.2)
        added = [vm for vm in registered if vm not in first]
        by_instance = workers_by_instance()
        futures = [
            client.submit(os.urandom, 1 << 20, pure=False, priority=100, allow_other_workers=True,
                          workers=[list(by_instance.values())[i % MAXIMUM]])
            for i in range(PERSISTED)
        ]  # fmt: skip
        before = client.gather(futures)
        held_on = _holders(client, futures, by_instance)
        assert client.gather(burst) == list(range(BURST))
        idle = time.monotonic()
        while len(group.instances) > MINIMUM or group.target_size > MINIMUM:
            _in_time(idle, 300, scheduler, f"the group back at {MINIMUM}")
            largest = max(largest, len(group.instances))
            time.sleep(0.2)
        idle_to_minimum = time.monotonic() - idle
        after = client.gather(futures)
        held_at_the_end = _holders(client, futures, workers_by_instance())
    finally:
        steady.stop.set()
        background.join(timeout=90)
    containers = docker("ps", "-a", "--format", "{{.Names}}", "--filter",
                        f"name={group.base_instance_name}").stdout.split()  # fmt: skip
    return Rehearsed(
        calls=list(group.calls), scheduler_log=scheduler.log.read_text(),
        burst_to_first_added=min(registered[vm] for vm in added) - began,
        joins=[registered[vm] - vms.started[vm] for vm in added],
        idle_to_minimum=idle_to_minimum, largest=largest, before=before, after=after,
        held_on=held_on, held_at_the_end=held_at_the_end, left=list(group.instances),
        containers=containers, stopped=dict(vms.stopped), steady=steady,
        failed=list(group.failed),
    )  # fmt: skip


def _holders(client: Client, futures: list[Any], by_instance: dict[str, str]) -> set[str]:
    """The instances whose workers hold `futures`."""
    instance = {address: vm for vm, address in by_instance.items()}
    held = {address for holders in client.who_has(futures).values() for address in holders}
    return {instance.get(address, address) for address in held}


def _in_time(began: float, seconds: float, scheduler: RehearsedVM, what: str) -> None:
    if time.monotonic() - began > seconds:
        raise AssertionError(f"not {what} in {seconds:.0f} s; the scheduler's log:\n"
                             f"{scheduler.log.read_text()[-6000:]}")  # fmt: skip

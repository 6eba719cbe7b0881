"""Google Compute Engine after the container agent's shutdown: the cloud-init user-data for
Container-Optimized OS that fetches the PEMs from Secret Manager at each start (and on reload) and
runs the image with `docker run` under systemd. One VM runs everything (role "all"), or one VM the
scheduler and a managed group the workers. The gcloud commands around it are in `gcloud`."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from entrypoint.contract import (
    AUTOSCALE_GROUP_VAR,
    AUTOSCALE_VAR,
    AUTOSCALE_WORKERS_VAR,
    CA_VAR,
    CERT_VAR,
    CRL_VAR,
    DASHBOARD_PORT,
    DRAIN_VAR,
    KEY_VAR,
    ROLE_VAR,
    SCHEDULER_ADDRESS_VAR,
    SCHEDULER_PORT,
    SCRATCH,
    SECRETS_MOUNT,
    UID,
    WORKERS_VAR,
    file_var,
)
from entrypoint.supervisor import longest_stop
from entrypoint.tools.registry import Repository, google_repository

# the Secret Manager secrets' parts, and the variable each one's file is given in
PART_VARS = {"cert": CERT_VAR, "key": KEY_VAR, "ca": CA_VAR, "crl": CRL_VAR}
SERVICE = "/etc/systemd/system/dask-tls.service"
ROLES = ("all", "scheduler", "worker")
# Seconds a worker VM's stop may spend moving its results to other workers (DRAIN_TIMEOUT): a Spot
# VM has 30 s from the ACPI soft-off to power-off, and the rest of the VM's shutdown needs some.
WORKER_DRAIN = 20
# docker's config, which names the credential helper, needs a writable HOME (COS's / is read-only)
DOCKER_HOME = "/run/dask-tls-docker"
UNIT = """\
[Unit]
Description=TLS-only Dask cluster, role {role} ({image})
Wants=network-online.target
After=network-online.target docker.service

[Service]
{start_pre}
ExecStart={docker_run}
# `systemctl reload dask-tls`: fetch the PEMs again, then have the container re-read them
ExecReload=/bin/bash {script}
ExecReload=/usr/bin/docker kill -s HUP {container}
{stop}
# the restart policy; exit 78 (a configuration error) would only fail again
Restart=always
RestartSec=5
RestartPreventExitStatus=78

[Install]
WantedBy=multi-user.target
"""
FETCH = r"""#!/bin/bash
# Fetch the cluster's PEMs from Secret Manager into a private tmpfs directory (never into
# instance metadata). The image takes the base64 the API returns as it is. On a reload the
# directory stays (the running container has it bind-mounted: a new one would stay invisible
# to it) and each file is replaced by a rename, once every secret has arrived.
set -euo pipefail
dir={secrets_dir}
metadata=${{METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}}
api=${{SECRET_MANAGER_URL:-https://secretmanager.googleapis.com/v1}}
json_value() {{ sed -n 's/.*"'"$1"'" *: *"\([^"]*\)".*/\1/p'; }}
project=$(curl -sSf -H 'Metadata-Flavor: Google' "$metadata/project/project-id")
token=$(curl -sSf -H 'Metadata-Flavor: Google' "$metadata/instance/service-accounts/default/token" \
  | json_value access_token)
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
trap 'rm -f "$dir"/.*.new' EXIT
fetch() {{
  curl -sSf -H "Authorization: Bearer $token" \
    "$api/projects/$project/secrets/$1/versions/latest:access" | json_value data > "$dir/.$2.new"
  [ -s "$dir/.$2.new" ] || {{ echo "secret $1 is empty or unreadable" >&2; exit 1; }}
}}
{fetches}
chown {uid}:{uid} "$dir" "$dir"/.*.new
for part in {parts}; do mv -f "$dir/.$part.new" "$dir/$part"; done
"""


OPEN_PORTS = r"""#!/bin/bash
# Container-Optimized OS's host firewall lets in SSH only. The workers share the VM's network and
# listen on ports the kernel picks from its ephemeral range: open that range to TCP. Who may reach
# it is the VPC firewall's call (the cluster's VMs only).
set -euo pipefail
ports=$(tr '\t' : < /proc/sys/net/ipv4/ip_local_port_range)
rule=(INPUT -p tcp --dport "$ports" -j ACCEPT)
iptables -w -C "${rule[@]}" 2>/dev/null || iptables -w -A "${rule[@]}"
"""


@dataclass(frozen=True)
class Deployment:
    project: str
    image: str
    source_ranges: tuple[str, ...]
    name: str = "dask-cluster"
    zone: str = "us-central1-a"
    machine_type: str = "e2-standard-4"
    tag: str = "dask-server"
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "cert": "dask-cluster-cert",
            "key": "dask-cluster-key",
            "ca": "dask-cluster-ca",
        }
    )
    sizing: dict[str, str] = field(default_factory=dict)  # NUM_WORKERS etc., when given
    secrets_dir: str = "/run/dask-tls"  # on the VM: /run is a tmpfs on Container-Optimized OS
    container: str = "dask-tls"
    ports: tuple[str, str] = (str(SCHEDULER_PORT), str(DASHBOARD_PORT))  # their host side
    uid: int = UID
    script: str = "/etc/dask-tls/fetch-secrets.sh"
    scratch_volume: str = "dask-scratch"  # a Docker volume: on the VM's disk, not in RAM
    # a cluster of VMs: a scheduler VM and a managed group of this many worker VMs
    worker_vms: int = 0
    worker_machine_type: str = ""  # empty: machine_type
    network: str = "default"
    external_ip: bool = False
    nat: bool = False  # a Cloud NAT of the cluster's own instead of Private Google Access
    dns: str = "zonal"  # the project's internal DNS: "zonal" or "global" (projects before 2018)
    spot: bool = False  # the worker VMs (never the scheduler's) are Spot VMs
    # (MIN, MAX): the scheduler grows and shrinks the worker group within these (None: it never)
    autoscale: tuple[int, int] | None = None

    @property
    def service_account(self) -> str:
        return f"{self.name}@{self.project}.iam.gserviceaccount.com"

    @property
    def scheduler_account(self) -> str:
        """The scheduler VM's service account: an account of its own when it autoscales (the
        only one that may change the group), else the workers' one."""
        if self.autoscale is None:
            return self.service_account
        return f"{self.scheduler_vm}@{self.project}.iam.gserviceaccount.com"

    @property
    def group(self) -> str:
        """The worker VMs' managed instance group."""
        return f"{self.name}-workers"

    @property
    def group_path(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instanceGroupManagers/{self.group}"

    @property
    def workers_per_vm(self) -> int | None:
        """The workers each worker VM runs: NUM_WORKERS when given, else its vCPUs as the machine
        type's name says them (None when it does not)."""
        if WORKERS_VAR in self.sizing:
            return int(self.sizing[WORKERS_VAR])
        return machine_vcpus(self.worker_machine_type or self.machine_type)

    @property
    def open_ports_script(self) -> str:
        return str(PurePosixPath(self.script).with_name("open-worker-ports.sh"))

    @property
    def scheduler_vm(self) -> str:
        return f"{self.name}-scheduler"

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    @property
    def scheduler_host(self) -> str:
        """The scheduler VM's internal DNS name, which the workers connect to: zonal
        (VM.ZONE.c.PROJECT.internal) or, on a project still on global DNS, VM.c.PROJECT.internal."""
        zone = f".{self.zone}" if self.dns == "zonal" else ""
        return f"{self.scheduler_vm}{zone}.c.{self.project}.internal"

    @property
    def repository(self) -> Repository | None:
        """The Google repository the image comes from (None: another registry, no credentials)."""
        return google_repository(self.image)


def machine_vcpus(machine_type: str) -> int | None:
    """The vCPUs of a predefined (e2-standard-4, n2-highmem-16, c3-standard-8-lssd) or custom
    (n2-custom-6-23040) machine type, from its name; None for one whose name does not say it
    (e2-medium and the other shared-core types)."""
    found = re.fullmatch(r"[a-z][a-z0-9]*-custom-([0-9]+)-[0-9]+(-ext)?", machine_type) or (
        re.fullmatch(r"[a-z][a-z0-9]*-[a-z]+-([0-9]+)(-lssd|-metal)?", machine_type)
    )
    return int(found[1]) if found and int(found[1]) > 0 else None


def worker_stop_timeout() -> int:
    """Seconds `docker stop` gives a worker container: its drain and close, and a second more."""
    return math.ceil(longest_stop(WORKER_DRAIN)) + 1


def docker_run(d: Deployment, role: str = "all") -> list[str]:
    """The exact command the VM runs: read-only root, tmpfs, non-root, PEMs from files, spill on a
    volume. Workers of a cluster share the VM's network: other VMs' workers must reach theirs."""
    files = [f"{file_var(PART_VARS[part])}={SECRETS_MOUNT}/{part}" for part in d.secrets]
    env = [*files, *_role_env(d, role)]
    network = (
        ["--network", "host", "--stop-timeout", str(worker_stop_timeout())]
        if role == "worker"
        else ["-p", f"{d.ports[0]}:{SCHEDULER_PORT}", "-p", f"{d.ports[1]}:{DASHBOARD_PORT}"]
    )
    return [
        "/usr/bin/docker", "run", "--rm", "--name", d.container, "--user", f"{d.uid}:{d.uid}",
        "--read-only", "--tmpfs", "/tmp", "-v", f"{d.scratch_volume}:{SCRATCH}", *network,
        "-v", f"{d.secrets_dir}:{SECRETS_MOUNT}:ro", *(a for e in env for a in ("-e", e)), d.image,
    ]  # fmt: skip


def _role_env(d: Deployment, role: str) -> list[str]:
    sizing = [f"{k}={v}" for k, v in d.sizing.items()]
    if role == "scheduler":
        return [f"{ROLE_VAR}=scheduler", *_autoscale_env(d)]
    if role == "worker":
        address = f"{SCHEDULER_ADDRESS_VAR}=tls://{d.scheduler_host}:{SCHEDULER_PORT}"
        if d.autoscale and WORKERS_VAR not in d.sizing:  # the number the autoscaler counts on
            sizing.append(f"{WORKERS_VAR}={d.workers_per_vm}")
        return [f"{ROLE_VAR}=worker", address, f"{DRAIN_VAR}={WORKER_DRAIN}", *sizing]
    return sizing


def _autoscale_env(d: Deployment) -> list[str]:
    """The scheduler's autoscaler: the group it sizes, within MIN:MAX, of VMs of so many
    workers (settings.Autoscale)."""
    if d.autoscale is None:
        return []
    low, high = d.autoscale
    return [f"{AUTOSCALE_VAR}={low}:{high}", f"{AUTOSCALE_GROUP_VAR}={d.group_path}",
            f"{AUTOSCALE_WORKERS_VAR}={d.workers_per_vm}"]  # fmt: skip


def fetch_script(d: Deployment) -> str:
    fetches = "\n".join(f"fetch {shlex.quote(s)} {part}" for part, s in d.secrets.items())
    return FETCH.format(
        secrets_dir=shlex.quote(d.secrets_dir),
        fetches=fetches,
        uid=d.uid,
        parts=" ".join(d.secrets),
    )


def unit(d: Deployment, role: str = "all") -> str:
    scripts = [d.script, *([d.open_ports_script] if role == "worker" else [])]
    return UNIT.format(
        role=role, image=d.image, script=d.script, container=d.container,
        start_pre="\n".join([
            *_leftover_removal(d),
            *(f"ExecStartPre=/bin/bash {script}" for script in scripts),
            *_registry_credentials(d),
        ]),
        docker_run=shlex.join(docker_run(d, role)), stop="\n".join(_stop(d, role)),
    )  # fmt: skip


def _leftover_removal(d: Deployment) -> list[str]:
    return [
        "# a container of this name left by an unclean end (a crash, dockerd killed) would stop",
        "# `docker run`; `-`: none to remove is the usual case",
        f"ExecStartPre=-/usr/bin/docker rm -f {d.container}",
    ]


def _registry_credentials(d: Deployment) -> list[str]:
    """A private image: docker pulls it with the VM's service account, through COS's
    docker-credential-gcr (its config in a HOME of the unit's own: COS's / is read-only)."""
    if (repository := d.repository) is None:
        return []
    return [
        f"# pulls from {repository.host} with the VM's service account",
        f"Environment=HOME={DOCKER_HOME}",
        f"RuntimeDirectory={PurePosixPath(DOCKER_HOME).name}",
        f"ExecStartPre=/usr/bin/docker-credential-gcr configure-docker --registries "
        f"{repository.host}",
    ]


def _stop(d: Deployment, role: str) -> list[str]:
    """A worker container drains on a stop (WORKER_DRAIN): `docker stop` and systemd wait for
    it; other roles stop in about a second."""
    if role != "worker":
        return [f"ExecStop=/usr/bin/docker stop {d.container}"]
    timeout = worker_stop_timeout()
    return [
        f"# its workers first hand their results to other workers, for up to {WORKER_DRAIN} s",
        f"ExecStop=/usr/bin/docker stop -t {timeout} {d.container}",
        f"TimeoutStopSec={timeout + 5}",
    ]


def user_data(d: Deployment, role: str = "all") -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    scripts = {d.script: fetch_script(d)}
    if role == "worker":
        scripts[d.open_ports_script] = OPEN_PORTS
    config: dict[str, Any] = {
        "write_files": [
            *(
                {"path": path, "permissions": "0700", "owner": "root", "content": content}
                for path, content in scripts.items()
            ),
            {"path": SERVICE, "permissions": "0644", "content": unit(d, role)},
        ],
        "runcmd": [["systemctl", "daemon-reload"], ["systemctl", "start", "dask-tls.service"]],
    }
    return "#cloud-config\n" + yaml.dump(config, Dumper=_BlockDumper, sort_keys=False, width=200)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the user-data reads like the files it writes."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_BlockDumper.add_representer(str, _str)

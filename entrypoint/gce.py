"""Google Compute Engine after the container agent's shutdown: a cloud-init user-data for
Container-Optimized OS that fetches the PEMs from Secret Manager at each start and runs the image
with `docker run` under systemd, plus the gcloud commands around it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

SECRETS_MOUNT = "/run/secrets/dask-tls"
UNIT = """\
[Unit]
Description=TLS-only Dask cluster ({image})
Wants=network-online.target
After=network-online.target docker.service

[Service]
ExecStartPre=/bin/bash {script}
ExecStart={docker_run}
ExecStop=/usr/bin/docker stop {container}
# the restart policy; exit 78 (a configuration error) would only fail again
Restart=always
RestartSec=5
RestartPreventExitStatus=78

[Install]
WantedBy=multi-user.target
"""
FETCH = r"""#!/bin/bash
# Fetch the cluster's PEMs from Secret Manager into a private tmpfs directory (never into
# instance metadata). The image takes the base64 the API returns as it is.
set -euo pipefail
dir={secrets_dir}
metadata=${{METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}}
api=${{SECRET_MANAGER_URL:-https://secretmanager.googleapis.com/v1}}
json_value() {{ sed -n 's/.*"'"$1"'" *: *"\([^"]*\)".*/\1/p'; }}
project=$(curl -sSf -H 'Metadata-Flavor: Google' "$metadata/project/project-id")
token=$(curl -sSf -H 'Metadata-Flavor: Google' "$metadata/instance/service-accounts/default/token" \
  | json_value access_token)
umask 077
rm -rf "$dir"
mkdir -m 0700 "$dir"
fetch() {{
  curl -sSf -H "Authorization: Bearer $token" \
    "$api/projects/$project/secrets/$1/versions/latest:access" | json_value data > "$dir/$2"
  [ -s "$dir/$2" ] || {{ echo "secret $1 is empty or unreadable" >&2; exit 1; }}
}}
{fetches}
chown -R {uid}:{uid} "$dir"
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
    ports: tuple[str, str] = ("8786", "8787")  # host side of 8786 and 8787
    uid: int = 10001
    script: str = "/etc/dask-tls/fetch-secrets.sh"

    @property
    def service_account(self) -> str:
        return f"{self.name}@{self.project}.iam.gserviceaccount.com"


def docker_run(d: Deployment) -> list[str]:
    """The exact command the VM runs: read-only root, tmpfs, non-root, PEMs from files."""
    files = [f"DASK_CLUSTER_{part.upper()}_FILE={SECRETS_MOUNT}/{part}" for part in d.secrets]
    env = [*files, *(f"{k}={v}" for k, v in d.sizing.items())]
    return [
        "/usr/bin/docker", "run", "--rm", "--name", d.container, "--user", f"{d.uid}:{d.uid}",
        "--read-only", "--tmpfs", "/tmp", "-p", f"{d.ports[0]}:8786", "-p", f"{d.ports[1]}:8787",
        "-v", f"{d.secrets_dir}:{SECRETS_MOUNT}:ro", *(a for e in env for a in ("-e", e)), d.image,
    ]  # fmt: skip


def fetch_script(d: Deployment) -> str:
    fetches = "\n".join(f"fetch {shlex.quote(s)} {part}" for part, s in d.secrets.items())
    return FETCH.format(secrets_dir=shlex.quote(d.secrets_dir), fetches=fetches, uid=d.uid)


def user_data(d: Deployment) -> str:
    unit = UNIT.format(
        image=d.image, script=d.script, container=d.container, docker_run=shlex.join(docker_run(d))
    )
    config: dict[str, Any] = {
        "write_files": [
            {"path": d.script, "permissions": "0700", "owner": "root", "content": fetch_script(d)},
            {
                "path": "/etc/systemd/system/dask-tls.service",
                "permissions": "0644",
                "content": unit,
            },
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


def gcloud_commands(d: Deployment, user_data_file: str, certs: str) -> list[list[str]]:
    """Secrets, a service account that may read them, the firewall rule, the VM."""
    p = ["--project", d.project]
    commands = [["gcloud", "iam", "service-accounts", "create", d.name, *p]]
    files = {"cert": "cluster.pem", "key": "cluster-key.pem", "ca": "ca.pem"}
    for part, secret in d.secrets.items():
        commands += [
            ["gcloud", "secrets", "create", secret, *p, "--replication-policy", "automatic",
             "--data-file", f"{certs}/{files[part]}"],
            ["gcloud", "secrets", "add-iam-policy-binding", secret, *p,
             "--member", f"serviceAccount:{d.service_account}",
             "--role", "roles/secretmanager.secretAccessor"],
        ]  # fmt: skip
    commands += [
        ["gcloud", "compute", "firewall-rules", "create", f"{d.name}-tls", *p,
         "--direction", "INGRESS", "--allow", f"tcp:{d.ports[0]},tcp:{d.ports[1]}",
         "--target-tags", d.tag,
         "--source-ranges", ",".join(d.source_ranges)],
        ["gcloud", "compute", "instances", "create", d.name, *p, "--zone", d.zone,
         "--machine-type", d.machine_type,
         "--image-family", "cos-stable", "--image-project", "cos-cloud",
         "--tags", d.tag, "--service-account", d.service_account, "--scopes", "cloud-platform",
         "--metadata-from-file", f"user-data={user_data_file}"],
    ]  # fmt: skip
    return commands


def legacy_command(d: Deployment, env_file: str) -> list[str]:
    """DEPRECATED: the container agent behind this stopped working on 2026-07-31. The env file
    carries single-line base64 PEMs (the only form --container-env-file keeps intact); they end up
    in instance metadata, readable from inside the VM."""
    return [
        "gcloud", "compute", "instances", "create-with-container", d.name, "--project", d.project,
        "--zone", d.zone, "--machine-type", d.machine_type, "--tags", d.tag,
        "--container-image", d.image, "--container-env-file", env_file,
        "--container-restart-policy", "always", "--container-mount-tmpfs", "mount-path=/tmp",
    ]  # fmt: skip

"""The gcloud commands around the VMs `gce` renders: one VM, or a scheduler VM and a managed
instance group of worker VMs, and the commands that resize and delete such a cluster; before them,
what a fresh project needs (the APIs; for VMs without external IPs, a way to Google's APIs)."""

from __future__ import annotations

import itertools

from entrypoint.contract import CA_PEM, CLUSTER_KEY_PEM, CLUSTER_PEM, CRL_PEM
from entrypoint.tools.gce import Deployment

COS = ["--image-family", "cos-stable", "--image-project", "cos-cloud"]
FILES = {
    "cert": CLUSTER_PEM,
    "key": CLUSTER_KEY_PEM,
    "ca": CA_PEM,
    "crl": CRL_PEM,
}  # what `certs new` wrote
Command = list[str]
# the APIs every plan uses; Artifact Registry's too when the image is in the project's own registry
SERVICES = ("compute.googleapis.com", "secretmanager.googleapis.com", "iam.googleapis.com")
REGISTRY_SERVICE = "artifactregistry.googleapis.com"
# the flags that say where a thing is, as its describe command takes them
LOCATION_FLAGS = ("--project", "--zone", "--region", "--router")
REGISTRY_READER = "roles/artifactregistry.reader"
# What the autoscaler does (read the group and its instances; resize it, delete named instances),
# and no more: compute.instanceGroupManagers.update covers resize and deleteInstances, .get the
# group and listManagedInstances. Bound to the scheduler's account on that one group only.
AUTOSCALER_PERMISSIONS = (
    "compute.instanceGroupManagers.get",
    "compute.instanceGroupManagers.update",
)


def single_vm(d: Deployment, user_data_file: str, certs: str) -> list[Command]:
    """Secrets, a service account that may read them (and pull the image), the firewall rule, the
    VM."""
    return [
        *_secrets(d, certs),
        *_registry_reader(d),
        ["gcloud", "compute", "firewall-rules", "create", f"{d.name}-tls", *_project(d),
         "--direction", "INGRESS", "--allow", _dask_ports(d), "--target-tags", d.tag,
         "--source-ranges", ",".join(d.source_ranges)],
        ["gcloud", "compute", "instances", "create", d.name, *_project(d), "--zone", d.zone,
         "--machine-type", d.machine_type, *COS,
         "--tags", d.tag, "--service-account", d.service_account, "--scopes", "cloud-platform",
         "--metadata-from-file", f"user-data={user_data_file}"],
    ]  # fmt: skip


def cluster(
    d: Deployment, scheduler_user_data: str, worker_user_data: str, certs: str
) -> list[Command]:
    """Secrets and their readers (with --autoscale, the scheduler's account of its own, and its
    right to change the worker group alone); two firewall rules by tag: every TCP port between the
    cluster's VMs (the workers' and nannies' ports are random) and 8786/8787 from the client
    ranges to the scheduler only; the scheduler VM; the workers' instance template (Spot VMs with
    --spot) and managed group."""

    def vm(account: str) -> Command:
        address = [] if d.external_ip else ["--no-address"]
        return [*COS, "--network", d.network, "--service-account", account,
                "--scopes", "cloud-platform", *address]  # fmt: skip

    return [
        *_secrets(d, certs),
        *_registry_reader(d),
        *_autoscaler_role(d),
        ["gcloud", "compute", "firewall-rules", "create", f"{d.name}-internal", *_project(d),
         "--network", d.network, "--direction", "INGRESS", "--allow", "tcp",
         "--source-tags", d.tag, "--target-tags", d.tag],
        ["gcloud", "compute", "firewall-rules", "create", f"{d.name}-clients", *_project(d),
         "--network", d.network, "--direction", "INGRESS", "--allow", _dask_ports(d),
         "--source-ranges", ",".join(d.source_ranges), "--target-tags", _scheduler_tag(d)],
        ["gcloud", "compute", "instances", "create", d.scheduler_vm, *_project(d),
         "--zone", d.zone, "--machine-type", d.machine_type, *vm(d.scheduler_account),
         "--tags", f"{d.tag},{_scheduler_tag(d)}",
         "--metadata-from-file", f"user-data={scheduler_user_data}"],
        ["gcloud", "compute", "instance-templates", "create", _template(d), *_project(d),
         "--machine-type", d.worker_machine_type or d.machine_type, *vm(d.service_account),
         *_spot(d),
         "--tags", d.tag, "--metadata-from-file", f"user-data={worker_user_data}"],
        ["gcloud", "compute", "instance-groups", "managed", "create", d.group, *_project(d),
         "--zone", d.zone, "--template", _template(d), "--size", str(d.worker_vms),
         "--base-instance-name", f"{d.name}-worker"],
    ]  # fmt: skip


def resize(d: Deployment, worker_vms: int) -> list[Command]:
    return [
        ["gcloud", "compute", "instance-groups", "managed", "resize", d.group, *_project(d),
         "--zone", d.zone, "--size", str(worker_vms)],
    ]  # fmt: skip


def delete(d: Deployment) -> list[Command]:
    """Everything `cluster` created, last first. --quiet: gcloud asks nothing."""
    quiet = [*_project(d), "--quiet"]
    return [
        ["gcloud", "compute", "instance-groups", "managed", "delete", d.group, *quiet,
         "--zone", d.zone],
        ["gcloud", "compute", "instance-templates", "delete", _template(d), *quiet],
        ["gcloud", "compute", "instances", "delete", d.scheduler_vm, *quiet, "--zone", d.zone],
        ["gcloud", "compute", "firewall-rules", "delete", f"{d.name}-internal",
         f"{d.name}-clients", *quiet],
        *(["gcloud", "secrets", "delete", secret, *quiet] for secret in d.secrets.values()),
        *_registry_reader(d, "remove-iam-policy-binding"),
        *_autoscaler_binding(d, "remove-iam-policy-binding"),
        *(["gcloud", "iam", "service-accounts", "delete", account, *quiet]
          for account in _accounts(d)),
    ]  # fmt: skip


def legacy_command(d: Deployment, env_file: str) -> Command:
    """DEPRECATED: the container agent behind this stopped working on 2026-07-31. The env file
    carries single-line base64 PEMs (the only form --container-env-file keeps intact); they end up
    in instance metadata, readable from inside the VM."""
    return [
        "gcloud", "compute", "instances", "create-with-container", d.name, "--project", d.project,
        "--zone", d.zone, "--machine-type", d.machine_type, "--tags", d.tag,
        "--container-image", d.image, "--container-env-file", env_file,
        "--container-restart-policy", "always", "--container-mount-tmpfs", "mount-path=/tmp",
    ]  # fmt: skip


def enable_services(d: Deployment) -> Command:
    """The APIs the plan uses: a new project has none of them on. Enabling an API that is on
    changes nothing."""
    registry = [REGISTRY_SERVICE] if _in_own_registry(d) else []
    return ["gcloud", "services", "enable", *SERVICES, *registry, *_project(d)]


def google_access(d: Deployment) -> list[Command]:
    """How VMs without external IPs reach Secret Manager and the registry: Private Google Access
    on their subnet (turning it on when on changes nothing), or, with --nat, a Cloud Router and NAT
    of the cluster's own for that subnet. An auto-mode network, such as `default`, names its subnet
    in each region after itself."""
    if d.external_ip:
        return []
    if not d.nat:
        return [["gcloud", "compute", "networks", "subnets", "update", d.network, *_project(d),
                 "--region", d.region, "--enable-private-ip-google-access"]]  # fmt: skip
    return [
        ["gcloud", "compute", "routers", "create", _router(d), *_project(d),
         "--network", d.network, "--region", d.region],
        ["gcloud", "compute", "routers", "nats", "create", _nat(d), *_project(d),
         "--router", _router(d), "--region", d.region, "--auto-allocate-nat-external-ips",
         "--nat-custom-subnet-ip-ranges", d.network],
    ]  # fmt: skip


def remove_nat(d: Deployment) -> list[Command]:
    """The router --nat made, and with it its NAT (a NAT is part of its router)."""
    if not d.nat:
        return []
    return [["gcloud", "compute", "routers", "delete", _router(d), *_project(d), "--quiet",
             "--region", d.region]]  # fmt: skip


def dns_setting(d: Deployment) -> Command:
    """The read that says which internal DNS names the project's VMs get: ZONAL_ONLY or
    ZONAL_DEFAULT (VM.ZONE.c.PROJECT.internal), GLOBAL_DEFAULT (VM.c.PROJECT.internal)."""
    return ["gcloud", "compute", "project-info", "describe", *_project(d),
            "--format", "value(vmDnsSetting)"]  # fmt: skip


def describe_for(command: Command) -> Command | None:
    """The read that finds what `command` creates (it succeeds only if the thing is there); None
    when `command` creates nothing."""
    if "create" not in command:
        return None
    at = command.index("create")
    name = command[at + 1]
    where = [arg for flag, value in itertools.pairwise(command)
             if flag in LOCATION_FLAGS for arg in (flag, value)]  # fmt: skip
    if command[1:at] == ["iam", "service-accounts"]:  # described by its email
        name = f"{name}@{where[where.index('--project') + 1]}.iam.gserviceaccount.com"
    return [*command[:at], "describe", name, *where]


def on_google_registry(image: str) -> bool:
    """Whether `image` is in Artifact Registry or Container Registry, which Private Google Access
    reaches (any other registry needs a NAT or an external IP)."""
    host = _registry_host(image)
    return host == "gcr.io" or host.endswith((".gcr.io", "-docker.pkg.dev"))


def _in_own_registry(d: Deployment) -> bool:
    parts = d.image.split("/")
    return on_google_registry(d.image) and len(parts) > 2 and parts[1] == d.project


def _registry_host(image: str) -> str:
    """The registry part of an image reference ("" for Docker Hub's short names)."""
    first, _, rest = image.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else ""


def _accounts(d: Deployment) -> list[str]:
    """The VMs' service accounts: one, or with --autoscale the workers' and the scheduler's."""
    return list(dict.fromkeys((d.service_account, d.scheduler_account)))


def _secrets(d: Deployment, certs: str) -> list[Command]:
    """The service accounts, the secrets made from the files (never a PEM on a command line) and
    each account's right to read them."""
    commands = [["gcloud", "iam", "service-accounts", "create", account.split("@")[0],
                 *_project(d)] for account in _accounts(d)]  # fmt: skip
    for part, secret in d.secrets.items():
        commands += [
            ["gcloud", "secrets", "create", secret, *_project(d), "--replication-policy",
             "automatic", "--data-file", f"{certs}/{FILES[part]}"],
            *(["gcloud", "secrets", "add-iam-policy-binding", secret, *_project(d),
               "--member", f"serviceAccount:{account}",
               "--role", "roles/secretmanager.secretAccessor"] for account in _accounts(d)),
        ]  # fmt: skip
    return commands


def _registry_reader(d: Deployment, verb: str = "add-iam-policy-binding") -> list[Command]:
    """Each service account's right to pull the image from its Google repository (or, with
    "remove-iam-policy-binding", its removal); none for an image on another registry."""
    if (repository := d.repository) is None:
        return []
    return [
        ["gcloud", "artifacts", "repositories", verb, repository.name,
         "--project", repository.project, "--location", repository.location,
         "--member", f"serviceAccount:{account}", "--role", REGISTRY_READER]
        for account in _accounts(d)
    ]  # fmt: skip


def autoscaler_role(d: Deployment) -> str:
    """The custom role of the autoscaler (an ID of letters, digits and _)."""
    return f"projects/{d.project}/roles/{d.name.replace('-', '_')}_autoscaler"


def _autoscaler_role(d: Deployment) -> list[Command]:
    """With --autoscale: a custom role of AUTOSCALER_PERMISSIONS alone, and the scheduler's
    account given it on the worker group alone (an IAM condition on the group's name)."""
    if d.autoscale is None:
        return []
    return [
        ["gcloud", "iam", "roles", "create", autoscaler_role(d).rsplit("/", 1)[1], *_project(d),
         "--title", f"{d.name} autoscaler", "--permissions", ",".join(AUTOSCALER_PERMISSIONS),
         "--stage", "GA"],
        *_autoscaler_binding(d),
    ]  # fmt: skip


def _autoscaler_binding(d: Deployment, verb: str = "add-iam-policy-binding") -> list[Command]:
    if d.autoscale is None:
        return []
    which = (["--condition", f'expression=resource.name == "{d.group_path}",title={d.group}']
             if verb == "add-iam-policy-binding" else ["--all"])  # fmt: skip
    return [
        ["gcloud", "projects", verb, d.project, "--member", f"serviceAccount:{d.scheduler_account}",
         "--role", autoscaler_role(d), *which],
    ]  # fmt: skip


def _spot(d: Deployment) -> Command:
    """Spot worker VMs: preempted, each is deleted, and the managed group creates it again from
    the template once Compute Engine has room (a repair: the group keeps its size)."""
    return (
        ["--provisioning-model", "SPOT", "--instance-termination-action", "DELETE"]
        if d.spot
        else []
    )


def _dask_ports(d: Deployment) -> str:
    """The scheduler's and the dashboard's ports on the VM."""
    return f"tcp:{d.ports[0]},tcp:{d.ports[1]}"


def _project(d: Deployment) -> Command:
    return ["--project", d.project]


def _scheduler_tag(d: Deployment) -> str:
    return f"{d.tag}-scheduler"


def _template(d: Deployment) -> str:
    return f"{d.name}-worker"


def _router(d: Deployment) -> str:
    return f"{d.name}-router"


def _nat(d: Deployment) -> str:
    return f"{d.name}-nat"

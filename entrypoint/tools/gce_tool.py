"""`gce`: the user-data and gcloud commands for one VM, or for a scheduler VM and a managed group
of worker VMs (and the commands that resize and delete that group); printed, or run with --apply."""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from entrypoint.contract import (
    CLUSTER_PEM,
    CRL_PEM,
    DASHBOARD_PORT,
    MAX_VMS,
    SCHEDULER_PORT,
    WORKERS_VAR,
    vm_bounds,
)
from entrypoint.errors import EXIT_CONFIG, ToolError
from entrypoint.tools import certs, gce, gcloud
from entrypoint.tools.gcloud_apply import Check, Step, apply, printed
from entrypoint.tools.registry import google_repository

PORTS = f"{SCHEDULER_PORT}/{DASHBOARD_PORT}"

# a project ID, and a name that must do as a service account's ID: 6 to 30 of a-z, 0-9 and -
GCE_NAME = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
# a zone: its region (us-central1, europe-west4, northamerica-northeast2), a dash, a letter
ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z][a-z0-9]*")
MAX_ACCOUNT_ID = 30  # characters of a service account's ID


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gce = commands.add_parser("gce", help="Google Compute Engine: user-data and gcloud commands")
    gce.add_argument("--project", required=True)
    gce.add_argument("--image", help="the image in a registry the VMs can pull (to create)")
    gce.add_argument("--source-range", action="append", dest="source_ranges",
                     help=f"who may reach {PORTS}, e.g. 203.0.113.7/32 (repeatable)")  # fmt: skip
    gce.add_argument("--name", default="dask-cluster", help="6 to 30 of a-z, 0-9 and -")
    gce.add_argument("--zone", default="us-central1-a", help="(default: us-central1-a)")
    gce.add_argument("--machine-type", default="e2-standard-4")
    gce.add_argument("--tag", help="network tag (default: dask-server; for many VMs, --name)")
    gce.add_argument("--certs", default="certs", help="where `certs new` wrote (for the secrets)")
    gce.add_argument("--no-ca", action="store_true", help="a self-signed certificate, no CA secret")
    gce.add_argument("--workers", help=f"{WORKERS_VAR} per VM (default: the VM's CPUs)")
    gce.add_argument("--out", type=Path, default=Path("user-data.yaml"),
                     help="the user-data (for many VMs: OUT-scheduler, OUT-worker)")  # fmt: skip
    gce.add_argument("--secrets-dir", default="/run/dask-tls", help=argparse.SUPPRESS)
    gce.add_argument("--container", default="dask-tls", help=argparse.SUPPRESS)
    gce.add_argument("--ports", nargs=2, default=[str(SCHEDULER_PORT), str(DASHBOARD_PORT)],
                     help=argparse.SUPPRESS)  # fmt: skip
    gce.add_argument("--apply", action="store_true", help="run the commands (gcloud configured)")
    gce.add_argument("--legacy", action="store_true", help="DEPRECATED create-with-container")
    many = gce.add_argument_group("many VMs: a scheduler VM and a managed group of worker VMs")
    many.add_argument("--worker-vms", type=_count(1), metavar="N", help="create with N worker VMs")
    many.add_argument("--worker-machine-type", help="(default: --machine-type)")
    many.add_argument("--network", default="default", help="the VPC network (default: default)")
    many.add_argument("--external-ip", action="store_true", help="give the VMs external IPs")
    many.add_argument("--nat", action="store_true",
                      help="a Cloud NAT of its own, not Private Google Access")  # fmt: skip
    many.add_argument("--dns", choices=("zonal", "global"), default="zonal",
                      help="the project's internal DNS names (default: zonal; README)")  # fmt: skip
    many.add_argument("--spot", action="store_true",
                      help="worker VMs as Spot VMs (the scheduler VM never is)")  # fmt: skip
    many.add_argument("--autoscale", type=_bounds, metavar="MIN:MAX",
                      help="the scheduler grows and shrinks the worker group within MIN:MAX "
                      "VMs (README, Autoscaling); give it to --delete too")  # fmt: skip
    change = many.add_mutually_exclusive_group()
    change.add_argument("--resize", type=_count(0), metavar="N", help="resize the worker group")
    change.add_argument("--delete", action="store_true", help="delete all that --worker-vms made")
    gce.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    steps, cleanup = gce_commands(args)
    if not args.apply:
        print("\n".join(shlex.join(command) for command in printed(steps)))
        return 0
    return apply(steps, deleting=args.delete, undo=cleanup)


def gce_commands(args: argparse.Namespace) -> tuple[list[Step], str]:
    """The steps to print or run, and the command that undoes them ("" when there is none).
    Raises ToolError before anything is written."""
    many = args.worker_vms is not None or args.resize is not None or args.delete
    deployment = gce_deployment(args, many)
    check_fleet_options(args, deployment, many)
    if args.resize is not None:
        return [*gcloud.resize(deployment, args.resize)], ""
    if args.delete:
        return [*gcloud.delete(deployment), *gcloud.remove_nat(deployment)], ""
    for option, value in (("--image", args.image), ("--source-range", args.source_ranges)):
        if not value:
            raise refusal(option, "is needed to create VMs", "give it (see gce --help)")
    if args.legacy and many:
        raise refusal("--legacy", "makes one VM only", "leave out --worker-vms")
    for cidr in args.source_ranges:
        try:
            everyone = ipaddress.ip_network(cidr, strict=False).prefixlen == 0
        except ValueError:
            raise refusal("--source-range", f"{cidr[:50]!r} is not an address range",
                              "give one like 203.0.113.7/32") from None  # fmt: skip
        if everyone:
            print(f"warning: {cidr} opens the cluster's ports to the whole internet",
                  file=sys.stderr)  # fmt: skip
    if args.legacy:
        print(
            "DEPRECATED: create-with-container's agent stopped working on 2026-07-31",
            file=sys.stderr,
        )
        return [gcloud.legacy_command(deployment, f"{args.certs}/cluster.env")], ""
    if not many:
        args.out.write_text(gce.user_data(deployment))
        print(f"wrote {args.out}: cloud-init for Container-Optimized OS", file=sys.stderr)
        single = gcloud.single_vm(deployment, str(args.out), args.certs)
        return [gcloud.enable_services(deployment), *single], ""
    return cluster_commands(args, deployment)


def gce_deployment(args: argparse.Namespace, many: bool) -> gce.Deployment:
    """The deployment the options describe; ToolError for an option gcloud would refuse (or
    that would name things no VM has), before anything is printed or written."""
    check_names(args)
    if args.nat and (args.external_ip or not many):
        raise refusal("--nat", "is for VMs without external IPs (a single VM has one)",
                      "use it with --worker-vms, without --external-ip")  # fmt: skip
    secrets = {"cert": f"{args.name}-cert", "key": f"{args.name}-key", "ca": f"{args.name}-ca"}
    if args.no_ca:
        del secrets["ca"]
    if (Path(args.certs) / CRL_PEM).exists():  # `certs revoke` wrote one: the optional fourth
        secrets["crl"] = f"{args.name}-crl"
    return gce.Deployment(
        project=args.project, image=args.image or "", source_ranges=tuple(args.source_ranges or ()),
        name=args.name, zone=args.zone, machine_type=args.machine_type,
        tag=args.tag or (args.name if many else "dask-server"),
        secrets=secrets, sizing={WORKERS_VAR: args.workers} if args.workers else {},
        secrets_dir=args.secrets_dir, container=args.container, ports=tuple(args.ports),
        worker_vms=args.worker_vms or 0, worker_machine_type=args.worker_machine_type or "",
        network=args.network, external_ip=args.external_ip, nat=args.nat, dns=args.dns,
        spot=args.spot, autoscale=args.autoscale,
    )  # fmt: skip


def check_names(args: argparse.Namespace) -> None:
    """The service account ID, the project ID and the zone, as gcloud and the DNS names need
    them; one ToolError line for the first that is not."""
    if not GCE_NAME.fullmatch(args.name):
        raise refusal("--name", f"{args.name[:40]!r} cannot name a service account",
                          "use 6 to 30 of a-z, 0-9 and -, starting with a letter")  # fmt: skip
    if not GCE_NAME.fullmatch(args.project):
        raise refusal("--project", f"{args.project[:40]!r} is not a project ID",
                      "give the ID (6 to 30 of a-z, 0-9 and -, starting with a letter), "
                      "not the name")  # fmt: skip
    if not ZONE.fullmatch(args.zone):
        raise refusal("--zone", f"{args.zone[:40]!r} is not a zone",
                      "give one like us-central1-a (gcloud compute zones list)")  # fmt: skip


def cluster_commands(
    args: argparse.Namespace, deployment: gce.Deployment
) -> tuple[list[Step], str]:
    """Checks the certificate names the scheduler's internal DNS name, writes both user-datas."""
    print(check_certificates(deployment, Path(args.certs), args.apply), file=sys.stderr)
    files = {role: args.out.with_name(f"{args.out.stem}-{role}{args.out.suffix}")
             for role in ("scheduler", "worker")}  # fmt: skip
    for role, path in files.items():
        path.write_text(gce.user_data(deployment, role))
    print(f"wrote {files['scheduler']}, {files['worker']}: cloud-init for Container-Optimized OS",
          file=sys.stderr)  # fmt: skip
    flags = [flag for flag, given in (("--no-ca", args.no_ca), ("--nat", args.nat)) if given]
    if deployment.repository:  # --delete then takes the account's right to pull back
        flags += ["--image", args.image]
    same = shlex.join(["gce", "--project", args.project, "--name", args.name, "--zone", args.zone,
                       *flags])  # fmt: skip
    if deployment.autoscale:  # --delete then takes the scheduler's account and rights back
        resize = f"the scheduler sizes the group (README, Autoscaling); by hand: {same} --resize N"
        same += " --autoscale {}:{}".format(*deployment.autoscale)
    else:
        resize = f"{same} --resize N"
    print(f"resize: {resize}\ndelete: {same} --delete", file=sys.stderr)
    print(reach_note(deployment), file=sys.stderr)
    commands = gcloud.cluster(deployment, str(files["scheduler"]), str(files["worker"]), args.certs)
    return [*fresh_project(deployment), *commands], f"{same} --delete --apply"


def fresh_project(d: gce.Deployment) -> list[Step]:
    """What the cluster's commands need first on a new project: the APIs, then (with --apply) a
    look at the project's internal DNS names, then the VMs' way to Google's APIs."""
    dns = Check(gcloud.dns_setting(d), lambda setting: dns_refusal(d, setting))
    return [gcloud.enable_services(d), dns, *gcloud.google_access(d)]


def dns_refusal(d: gce.Deployment, setting: str) -> str:
    """Why the workers would not find the scheduler under its name on a project whose
    vmDnsSetting is `setting` ("" when they would, or when the setting says nothing)."""
    kind = {"GLOBAL": "global", "ZONAL": "zonal"}.get(setting.split("_")[0], d.dns)
    if kind == d.dns:
        return ""
    host = replace(d, dns=kind).scheduler_host
    return (f"--dns: project {d.project} gives its VMs {kind} internal DNS names ({setting}), so "
            f"{d.scheduler_host} would not resolve; run again with --dns {kind} and a certificate "
            f"for {host} (certs new --name {host})")  # fmt: skip


def reach_note(d: gce.Deployment) -> str:
    """A line on how the VMs reach the registry and Secret Manager, and clients the scheduler."""
    if d.external_ip:
        return "external IPs (--external-ip): the VMs reach Google's APIs and the registry directly"
    way = (f"a Cloud NAT ({d.name}-nat, region {d.region})" if d.nat else
           f"Private Google Access on subnet {d.network} ({d.region})")  # fmt: skip
    warning = ""
    if not d.nat and not gcloud.on_google_registry(d.image):
        warning = (
            f"; warning: {d.image} is not on a Google registry, which is all Private "
            "Google Access reaches: give --nat (or use a NAT of the network's)"
        )
    return (
        f"no external IPs: the VMs pull the image and read Secret Manager through {way}; "
        f"clients connect from inside network {d.network} (or use --external-ip){warning}"
    )


def check_fleet_options(args: argparse.Namespace, deployment: gce.Deployment, many: bool) -> None:
    """The image's name must say its repository when it is Google's (the service account is
    given the right to pull from it); Spot VMs are only ever the workers."""
    try:
        google_repository(deployment.image)
    except ValueError as error:
        raise refusal("--image", str(error), "give the image's full name in its registry") from None
    if args.spot and not many:
        raise refusal("--spot", "makes the worker VMs Spot, and one VM runs the scheduler too",
                      "give --worker-vms N as well")  # fmt: skip
    if args.autoscale is not None:
        check_autoscale(args, deployment)


def check_autoscale(args: argparse.Namespace, deployment: gce.Deployment) -> None:
    """--autoscale MIN:MAX sizes the group --worker-vms N makes (MIN <= N <= MAX) or goes with
    --delete; the scheduler's account (NAME-scheduler) must be a valid ID; the workers each
    worker VM runs must be known (--workers, or the machine type's vCPUs)."""
    low, high = args.autoscale
    if args.resize is not None or (args.worker_vms is None and not args.delete):
        raise refusal("--autoscale", "goes with --worker-vms N (to create) or --delete",
                      "give --worker-vms N, MIN <= N <= MAX")  # fmt: skip
    if args.worker_vms is not None and not low <= args.worker_vms <= high:
        raise refusal("--autoscale", f"{low}:{high} does not hold --worker-vms {args.worker_vms}",
                      "give a MIN:MAX with MIN <= N <= MAX")  # fmt: skip
    if len(deployment.scheduler_vm) > MAX_ACCOUNT_ID:
        raise refusal("--name", f"{args.name!r} is too long for the scheduler's own service "
                      f"account ({deployment.scheduler_vm})",
                      f"use at most {MAX_ACCOUNT_ID - len('-scheduler')} characters with "
                      "--autoscale")  # fmt: skip
    if not args.delete and deployment.workers_per_vm is None:
        machine = deployment.worker_machine_type or deployment.machine_type
        raise refusal("--autoscale", f"cannot tell how many workers a {machine} VM runs",
                      "give --workers N (per VM)")  # fmt: skip


def check_certificates(deployment: gce.Deployment, directory: Path, apply: bool) -> str:
    """A line for the user when the cluster certificate names the scheduler's internal DNS name,
    or is still to be made (not if the commands are to run now); ToolError otherwise."""
    host = deployment.scheduler_host
    make = f"certs new --out {shlex.quote(str(directory))} --name {host}"
    path = directory / CLUSTER_PEM
    files = [directory / gcloud.FILES[part] for part in deployment.secrets]
    if apply and (missing := [file for file in files if not file.exists()]):
        raise refusal("--certs", f"there is no {missing[0]}", f"make the set with: {make}")
    if not path.exists():
        return f"the cluster certificate must name {host}; make it with: {make}"
    try:
        names = certs.names_in(path.read_bytes())
    except ValueError:
        raise refusal("--certs", f"{path} holds no PEM certificate", make) from None
    if host.lower() not in {name.lower() for name in names}:
        raise refusal("--certs", f"{path} does not name {host} (the workers' way to the "
                          "scheduler)", f"issue it again with: {make}")  # fmt: skip
    return f"{path} names {host}, the workers' way to the scheduler"


def _bounds(text: str) -> tuple[int, int]:
    """MIN:MAX worker VMs: 0 <= MIN <= MAX, 1 <= MAX <= 1000 (what the image accepts)."""
    try:
        return vm_bounds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MIN:MAX worker VMs, 0 <= MIN <= MAX <= {MAX_VMS}, MAX >= 1 (e.g. 1:4)"
        ) from None


def _count(least: int) -> Callable[[str], int]:
    def count(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {least} up")
        return int(text)

    return count


def refusal(option: str, problem: str, fix: str) -> ToolError:
    """A gcloud command would fail on this option: say so first, exit 78 (a configuration error)."""
    return ToolError(f"{option}: {problem}; {fix}", EXIT_CONFIG)

"""`gce`: the user-data and gcloud commands for one VM, or for a scheduler VM and a managed group
of worker VMs (and the commands that resize and delete that group); printed, or run with --apply."""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from entrypoint.contract import CLUSTER_PEM, CRL_PEM, DASHBOARD_PORT, SCHEDULER_PORT, WORKERS_VAR
from entrypoint.errors import EXIT_CONFIG, ToolError
from entrypoint.tools import certs, gce, gcloud

PORTS = f"{SCHEDULER_PORT}/{DASHBOARD_PORT}"

# a project ID, and a name that must do as a service account's ID: 6 to 30 of a-z, 0-9 and -
GCE_NAME = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gce = commands.add_parser("gce", help="Google Compute Engine: user-data and gcloud commands")
    gce.add_argument("--project", required=True)
    gce.add_argument("--image", help="the image in a registry the VMs can pull (to create)")
    gce.add_argument("--source-range", action="append", dest="source_ranges",
                     help=f"who may reach {PORTS}, e.g. 203.0.113.7/32 (repeatable)")  # fmt: skip
    gce.add_argument("--name", default="dask-cluster", help="6 to 30 of a-z, 0-9 and -")
    gce.add_argument("--zone", default="us-central1-a")
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
    change = many.add_mutually_exclusive_group()
    change.add_argument("--resize", type=_count(0), metavar="N", help="resize the worker group")
    change.add_argument("--delete", action="store_true", help="delete all that --worker-vms made")
    gce.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    commands, cleanup = gce_commands(args)
    if not args.apply:
        print("\n".join(shlex.join(command) for command in commands))
        return 0
    return apply(commands, keep_going=args.delete, cleanup=cleanup)


def gce_commands(args: argparse.Namespace) -> tuple[list[gcloud.Command], str]:
    """The commands to print or run, and the one that undoes them ("" when there is none).
    Raises ToolError before anything is written."""
    many = args.worker_vms is not None or args.resize is not None or args.delete
    deployment = gce_deployment(args, many)
    if args.resize is not None:
        return gcloud.resize(deployment, args.resize), ""
    if args.delete:
        return gcloud.delete(deployment), ""
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
        return gcloud.single_vm(deployment, str(args.out), args.certs), ""
    return cluster_commands(args, deployment)


def gce_deployment(args: argparse.Namespace, many: bool) -> gce.Deployment:
    if not GCE_NAME.fullmatch(args.name):
        raise refusal("--name", f"{args.name[:40]!r} cannot name a service account",
                          "use 6 to 30 of a-z, 0-9 and -, starting with a letter")  # fmt: skip
    if many and not GCE_NAME.fullmatch(args.project):
        raise refusal("--project", f"{args.project[:40]!r} is not a project ID",
                          "give the ID (6 to 30 of a-z, 0-9 and -), not the name")  # fmt: skip
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
        network=args.network, external_ip=args.external_ip,
    )  # fmt: skip


def cluster_commands(
    args: argparse.Namespace, deployment: gce.Deployment
) -> tuple[list[gcloud.Command], str]:
    """Checks the certificate names the scheduler's internal DNS name, writes both user-datas."""
    print(check_certificates(deployment, Path(args.certs), args.apply), file=sys.stderr)
    files = {role: args.out.with_name(f"{args.out.stem}-{role}{args.out.suffix}")
             for role in ("scheduler", "worker")}  # fmt: skip
    for role, path in files.items():
        path.write_text(gce.user_data(deployment, role))
    print(f"wrote {files['scheduler']}, {files['worker']}: cloud-init for Container-Optimized OS",
          file=sys.stderr)  # fmt: skip
    same = shlex.join(["gce", "--project", args.project, "--name", args.name, "--zone", args.zone,
                       *(["--no-ca"] if args.no_ca else [])])  # fmt: skip
    print(f"resize: {same} --resize N\ndelete: {same} --delete", file=sys.stderr)
    if not args.external_ip:
        print(f"no external IPs: the VMs pull the image and read Secret Manager through Private "
              f"Google Access or Cloud NAT on network {args.network}; clients connect from "
              f"inside it (or use --external-ip)", file=sys.stderr)  # fmt: skip
    commands = gcloud.cluster(deployment, str(files["scheduler"]), str(files["worker"]), args.certs)
    return commands, f"{same} --delete --apply"


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


def apply(commands: list[gcloud.Command], keep_going: bool, cleanup: str) -> int:
    """Runs each command; stops at the first failure unless `keep_going` (deleting)."""
    if not shutil.which("gcloud"):
        print("gcloud is not installed here: run the commands without --apply and paste them")
        return 1
    failed = []
    for command in commands:
        print("+", shlex.join(command), flush=True)
        if subprocess.run(command).returncode:
            failed.append(command)
            if not keep_going:
                undo = f"; {cleanup} removes what was made" if cleanup else ""
                print(f"gcloud failed at: {shlex.join(command)}{undo}", file=sys.stderr)
                return 1
    for command in failed:
        print(f"gcloud failed at: {shlex.join(command)}", file=sys.stderr)
    return 1 if failed else 0


def _count(least: int) -> Callable[[str], int]:
    def count(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {least} up")
        return int(text)

    return count


def refusal(option: str, problem: str, fix: str) -> ToolError:
    """A gcloud command would fail on this option: say so first, exit 78 (a configuration error)."""
    return ToolError(f"{option}: {problem}; {fix}", EXIT_CONFIG)

"""The image's tools: `docker run --rm IMAGE certs new ...`, `certs inspect`, `client-config`,
`gce`. (With no arguments the image starts the cluster instead; see __main__.)"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from entrypoint import certs, client, gce
from entrypoint.errors import ToolError


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except ToolError as error:
        print(f"{argv[0]}: {error}", file=sys.stderr)
        return error.exit_code
    return result


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dask-tls", description=__doc__)
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    cert_commands = commands.add_parser("certs", help="issue or inspect certificates")
    cert_sub = cert_commands.add_subparsers(required=True, metavar="ACTION")
    new = cert_sub.add_parser("new", help="a CA for a cluster, its certificate, clients' ones")
    new.add_argument("--out", type=Path, default=Path("certs"), help="directory (default: certs)")
    new.add_argument("--name", action="append", help="a host name or IP the cluster is reached at")
    new.add_argument("--client", action="append", help="a client to issue for (default: client)")
    new.add_argument("--rsa", action="store_true", help="RSA 3072 instead of ECDSA P-256")
    new.add_argument("--days", type=float, default=365, help="validity (default: 365)")
    new.set_defaults(run=run_new)
    inspect = cert_sub.add_parser("inspect", help="what PEM files hold; whether a key matches")
    inspect.add_argument("files", type=Path, nargs="+")
    inspect.set_defaults(run=run_inspect)

    config = commands.add_parser("client-config", help="dask config for plain Client('tls://...')")
    config.add_argument("--certs", type=Path, default=Path("certs"))
    config.add_argument("--client", default="client")
    config.add_argument("--out", type=Path, default=client.DEFAULT_CONFIG)
    config.set_defaults(run=run_client_config)

    gce = commands.add_parser("gce", help="Google Compute Engine: user-data and gcloud commands")
    gce.add_argument("--project", required=True)
    gce.add_argument("--image", required=True, help="the image in a registry the VM can pull")
    gce.add_argument("--source-range", action="append", required=True, dest="source_ranges",
                     help="who may reach 8786/8787, e.g. 203.0.113.7/32 (repeatable)")  # fmt: skip
    gce.add_argument("--name", default="dask-cluster")
    gce.add_argument("--zone", default="us-central1-a")
    gce.add_argument("--machine-type", default="e2-standard-4")
    gce.add_argument("--tag", default="dask-server")
    gce.add_argument("--certs", default="certs", help="where `certs new` wrote (for the secrets)")
    gce.add_argument("--no-ca", action="store_true", help="a self-signed certificate, no CA secret")
    gce.add_argument("--workers", help="NUM_WORKERS (default: the VM's CPUs)")
    gce.add_argument("--out", type=Path, default=Path("user-data.yaml"))
    gce.add_argument("--secrets-dir", default="/run/dask-tls", help=argparse.SUPPRESS)
    gce.add_argument("--container", default="dask-tls", help=argparse.SUPPRESS)
    gce.add_argument("--ports", nargs=2, default=["8786", "8787"], help=argparse.SUPPRESS)
    gce.add_argument("--apply", action="store_true", help="run the commands (gcloud configured)")
    gce.add_argument("--legacy", action="store_true", help="DEPRECATED create-with-container")
    gce.set_defaults(run=run_gce)
    return top


def run_new(args: argparse.Namespace) -> int:
    names = tuple(args.name or certs.DEFAULT_NAMES)
    kind = "rsa3072" if args.rsa else "ec"
    made = certs.new_cluster(args.out, names, tuple(args.client or ["client"]), kind, args.days)
    out, secrets = shlex.quote(str(args.out)), shlex.quote(str(args.out.resolve() / "secrets"))
    print(f"wrote {len(made.written)} files to {args.out}/ (keys 0600) for {', '.join(names)}")
    print("\ndocker run -e (reads the files as you paste it):")
    print(f'  -e DASK_CLUSTER_CERT="$(cat {out}/cluster.pem)"')
    print(f'  -e DASK_CLUSTER_KEY="$(cat {out}/cluster-key.pem)"')
    print(f'  -e DASK_CLUSTER_CA="$(cat {out}/ca.pem)"')
    print(f"\ndocker run --env-file (single-line base64):\n  --env-file {out}/cluster.env")
    print("\na mounted secret (files 0600, so run as your own uid):")
    print(f'  --user "$(id -u):0" -v {secrets}:/run/secrets/dask-tls:ro')
    for var, file in (("CERT", "cert"), ("KEY", "key"), ("CA", "ca")):
        print(f"  -e DASK_CLUSTER_{var}_FILE=/run/secrets/dask-tls/{file}.pem")
    for name in made.clients:
        print(f"\nclient {name}: {out}/{name}.pem, {out}/{name}-key.pem; browser: {out}/{name}.p12")
    print(f"\nkeep {out}/ca-key.pem offline: it issues certificates with full access")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    for path in args.files:
        for line in certs.describe(path):
            print(line)
    keys = [p for p in args.files if b"PRIVATE KEY-----" in p.read_bytes()]
    leaves = [p for p in args.files if b"CERTIFICATE-----" in p.read_bytes()]
    for key in keys:
        for leaf in leaves:
            if key != leaf:
                verdict = "matches" if certs.key_matches(key, leaf) else "does not match"
                print(f"{key} {verdict} the certificate in {leaf}")
    return 0


def run_client_config(args: argparse.Namespace) -> int:
    path = client.write_config(args.certs, args.client, args.out)
    print(f"wrote {path}: Client('tls://HOST:8786') now uses {args.certs}/{args.client}.pem")
    if path.parent != client.DEFAULT_CONFIG.expanduser().parent and client.from_image():
        print(f"move it where dask looks: mkdir -p ~/.config/dask && mv {path} ~/.config/dask/")
    return 0


def run_gce(args: argparse.Namespace) -> int:
    for cidr in args.source_ranges:
        if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
            print(
                f"warning: {cidr} opens the cluster's ports to the whole internet", file=sys.stderr
            )
    secrets = {"cert": f"{args.name}-cert", "key": f"{args.name}-key", "ca": f"{args.name}-ca"}
    if args.no_ca:
        del secrets["ca"]
    deployment = gce.Deployment(
        project=args.project, image=args.image, source_ranges=tuple(args.source_ranges),
        name=args.name, zone=args.zone, machine_type=args.machine_type, tag=args.tag,
        secrets=secrets, sizing={"NUM_WORKERS": args.workers} if args.workers else {},
        secrets_dir=args.secrets_dir, container=args.container, ports=tuple(args.ports),
    )  # fmt: skip
    if args.legacy:
        print(
            "DEPRECATED: create-with-container's agent stopped working on 2026-07-31",
            file=sys.stderr,
        )
        commands = [gce.legacy_command(deployment, f"{args.certs}/cluster.env")]
    else:
        args.out.write_text(gce.user_data(deployment))
        print(f"wrote {args.out}: cloud-init for Container-Optimized OS", file=sys.stderr)
        commands = gce.gcloud_commands(deployment, str(args.out), args.certs)
    if not args.apply:
        print("\n".join(shlex.join(command) for command in commands))
        return 0
    if not shutil.which("gcloud"):
        print("gcloud is not installed here: run the commands without --apply and paste them")
        return 1
    for command in commands:
        print("+", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    return 0

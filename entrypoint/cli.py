"""The image's tools: `docker run --rm IMAGE certs new ...`, `certs inspect`, `client-config`,
`gce`. (With no arguments the image starts the cluster instead; see __main__.)"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from entrypoint import certs, client, gce_tool


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
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

    gce_tool.add_parser(commands)
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
    return 0

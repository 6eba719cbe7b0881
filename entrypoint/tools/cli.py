"""The image's tools: `docker run --rm IMAGE certs new ...`, `certs renew`, `certs inspect`,
`client-config`, `gce`. (With no arguments the image starts the cluster instead; see __main__.)"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from entrypoint.contract import SCHEDULER_PORT, client_files
from entrypoint.errors import EXIT_FAILURE, ToolError
from entrypoint.tools import certs_tool, client, gce_tool
from entrypoint.tools.image import in_image

COMMANDS = ("certs", "client-config", "gce")


def main(argv: list[str]) -> int:
    """Run one tool; a user error is one line on stderr (`dask-tls: ...`), never a traceback."""
    args = parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except ToolError as error:
        print(f"dask-tls: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # the folder given or its permissions: the user's to fix
        print(f"dask-tls: {file_problem(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return result


def file_problem(error: OSError) -> str:
    """One line for a file the tool could not read or write, with the fix when in the image."""
    line = f"{error.filename}: {error.strerror or error}"
    if isinstance(error, PermissionError) and in_image():
        line += f' (this runs as uid {os.getuid()}: run it as the folder\'s owner, -u "$(id -u)")'
    return line


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dask-tls", description=__doc__)
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    cert_commands = commands.add_parser("certs", help="issue, renew or inspect certificates")
    cert_sub = cert_commands.add_subparsers(required=True, metavar="ACTION")
    new = cert_sub.add_parser("new", help="a CA for a cluster, its certificate, clients' ones")
    new.add_argument("--out", type=Path, default=Path("certs"), help="directory (default: certs)")
    new.add_argument("--name", action="append", help="a host name or IP the cluster is reached at")
    new.add_argument("--client", action="append", help="a client to issue for (default: client)")
    new.add_argument("--viewer", action="append", help="a viewer to issue for: dashboard only")
    new.add_argument("--rsa", action="store_true", help="RSA 3072 instead of ECDSA P-256")
    new.add_argument("--days", type=float, default=365, help="validity (default: 365)")
    new.set_defaults(run=certs_tool.run_new)
    renew = cert_sub.add_parser("renew", help="a new cluster certificate from the same CA")
    renew.add_argument(
        "--certs",
        type=Path,
        default=Path("certs"),
        help="the folder `certs new` wrote, with ca-key.pem (default: certs)",
    )
    renew.add_argument("--name", action="append", help="names (default: the current certificate's)")
    renew.add_argument("--client", action="append", help="a client to issue for anew (repeatable)")
    renew.add_argument("--viewer", action="append", help="a viewer (dashboard only) to issue for")
    renew.add_argument("--days", type=float, default=365,
                       help="validity (default: 365; never past the CA's)")  # fmt: skip
    renew.set_defaults(run=certs_tool.run_renew)
    revoke = cert_sub.add_parser("revoke", help="take certificates' access away (crl.pem)")
    revoke.add_argument("names", nargs="*", metavar="NAME", help="a client's or viewer's name")
    revoke.add_argument(
        "--certs",
        type=Path,
        default=Path("certs"),
        help="the folder `certs new` wrote, with ca-key.pem (default: certs)",
    )
    revoke.add_argument(
        "--serial",
        action="append",
        default=[],
        type=certs_tool.serial,
        help="a certificate's serial in hex (certs inspect shows it)",
    )
    revoke.add_argument(
        "--days",
        type=float,
        default=None,
        help="the list's next update (default: when the CA expires)",
    )
    revoke.set_defaults(run=certs_tool.run_revoke)  # fmt: skip
    inspect = cert_sub.add_parser("inspect", help="what PEM files hold; whether a key matches")
    inspect.add_argument("files", type=Path, nargs="+")
    inspect.set_defaults(run=certs_tool.run_inspect)

    config = commands.add_parser("client-config", help="dask config for plain Client('tls://...')")
    config.add_argument("--certs", type=Path, default=Path("certs"))
    config.add_argument("--client", default="client")
    config.add_argument("--out", type=Path, default=client.DEFAULT_CONFIG)
    config.set_defaults(run=run_client_config)

    gce_tool.add_parser(commands)
    return top


def run_client_config(args: argparse.Namespace) -> int:
    path = client.write_config(args.certs, args.client, args.out)
    cert = args.certs / client_files(args.client)[0]
    print(f"wrote {path}: Client('tls://HOST:{SCHEDULER_PORT}') now uses {cert}")
    if path.parent != client.DEFAULT_CONFIG.expanduser().parent and in_image():
        print(f"move it where dask looks: mkdir -p ~/.config/dask && mv {path} ~/.config/dask/")
    return 0

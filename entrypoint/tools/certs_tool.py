"""`certs new|renew|inspect`: the arguments checked, the files written through `certs`, and what
to paste printed with paths that work in the user's shell.

In the image the tools see the user's folder only where it is mounted. Run as the README shows
(`-v "$PWD:$PWD" -w "$PWD"`), a path under the working directory is the same path on the host; the
printout spells it `"$PWD/..."`, which the user's shell expands, so it holds for `-v "$PWD:/w"` too.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from entrypoint.contract import (
    CA_FILE,
    CA_KEY_PEM,
    CA_PEM,
    CA_VAR,
    CERT_FILE,
    CERT_VAR,
    CLUSTER_ENV,
    CLUSTER_KEY_PEM,
    CLUSTER_PEM,
    CRL_FILE,
    CRL_PEM,
    CRL_VAR,
    DEFAULT_CLIENT,
    KEY_FILE,
    KEY_VAR,
    SECRET_PREFIX,
    SECRETS_DIR,
    SECRETS_MOUNT,
    client_files,
    file_var,
)
from entrypoint.errors import ToolError
from entrypoint.tools import certs
from entrypoint.tools.image import APP_DIR, in_image

Made = TypeVar("Made")

# set in the image (Dockerfile): the files here are the container's, the user's only where mounted
MOUNT_HINT = (
    'mount your folder at the same path: docker run --rm -u "$(id -u)" -v "$PWD:$PWD" -w "$PWD"'
)
MAX_DAYS = 36500
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
DNS_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# client NAME writes NAME.pem and NAME-key.pem beside the CA's, ours and the revocation list
TAKEN = {"ca", "cluster", "crl"}


def run_new(args: argparse.Namespace) -> int:
    names = checked_names(args.name) or certs.DEFAULT_NAMES
    viewers = checked_viewers(args.viewer or [], args.client or [])
    clients = checked_clients(args.client or ([] if viewers else [DEFAULT_CLIENT]))
    days = checked_days(args.days)
    users_folder(args.out, "--out")
    if args.out.exists() and not args.out.is_dir():
        raise ToolError(f"--out {args.out}: is a file; give a folder (made if missing)")
    if (args.out / CA_KEY_PEM).exists():
        raise ToolError(
            f"--out {args.out}: holds a CA already ({CA_KEY_PEM}), which certs new would replace; "
            "`certs renew` issues new certificates from it, or give another --out"
        )
    writable_folder(args.out, "--out")
    kind = "rsa3072" if args.rsa else "ec"
    made = written(lambda: certs.new_cluster(args.out, names, clients, kind, days, viewers))
    out = args.out
    print(f"wrote {len(made.written)} files to {shown(out)} (keys 0600) for {', '.join(names)}")
    print("\ndocker run -e (reads the files as you paste it):")
    for var, file in ((CERT_VAR, CLUSTER_PEM), (KEY_VAR, CLUSTER_KEY_PEM), (CA_VAR, CA_PEM)):
        print(f'  -e {var}="$(cat {shown(out / file)})"')
    print("\ndocker run --env-file (single-line base64):")
    print(f"  --env-file {shown(out / CLUSTER_ENV)}")
    print("\na mounted secret (files 0600, so run as your own uid):")
    print(f'  --user "$(id -u):0" -v {shown(out / SECRETS_DIR)}:{SECRETS_MOUNT}:ro')
    for var, file in ((CERT_VAR, CERT_FILE), (KEY_VAR, KEY_FILE), (CA_VAR, CA_FILE)):
        print(f"  -e {file_var(var)}={SECRETS_MOUNT}/{file}")
    print_clients(out, made.clients)
    print(f"\nkeep {shown(out / CA_KEY_PEM)} offline: it issues certificates with full access")
    return 0


def run_renew(args: argparse.Namespace) -> int:
    names = checked_names(args.name)
    viewers = checked_viewers(args.viewer or [], args.client or [])
    clients = checked_clients(args.client or [])
    days = checked_days(args.days)
    users_folder(args.certs, "--certs")
    made = written(lambda: certs.renew_cluster(args.certs, names, clients, days, viewers))
    cluster, ca = made.cluster.cert, made.ca.cert
    print(
        f"renewed from the CA in {shown(args.certs)} (unchanged): the cluster certificate for "
        f"{', '.join(certs.names_of(cluster))}, serial {cluster.serial_number:x}, "
        f"valid until {cluster.not_valid_after_utc:%Y-%m-%d}"
    )
    if cluster.not_valid_after_utc > ca.not_valid_after_utc - timedelta(days=1):
        print(f"note: it ends with the CA, on {ca.not_valid_after_utc:%Y-%m-%d}; {certs.NEW_CA}")
    if not certs.strict_ca(ca):
        print(f"warning: ca.pem lacks keyUsage or key identifiers (strict clients refuse it); "
              f"{certs.NEW_CA}")  # fmt: skip
    for path in made.written:
        print(f"wrote {shown(path)} ({path.stat().st_mode & 0o777:04o})")
    secrets = shown(args.certs / SECRETS_DIR)
    print(
        f"deliver, mounted as files ({SECRET_PREFIX}*_FILE from {secrets}): "
        "replaced in place; make the container re-read them: docker kill -s HUP CONTAINER"
    )
    print(
        f"deliver, as -e values or --env-file {shown(args.certs / CLUSTER_ENV)}: a running "
        "container keeps its environment; start a new container with the new values"
    )
    print_clients(args.certs, made.clients)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Add the named certificates to crl.pem, and say how to deliver it."""
    names = checked_clients(args.names)
    days = None if args.days is None else checked_days(args.days)
    users_folder(args.certs, "--certs")
    revoked = written(lambda: certs.revoke(args.certs, names, tuple(args.serial), days))
    crl, folder = revoked.crl, args.certs
    added = ", ".join(f"{serial:x}" for serial in revoked.added) or "none new"
    ends = f"{crl.next_update_utc:%Y-%m-%d}" if crl.next_update_utc else "never"
    print(f"revoked serials {added}; the list now holds {len(crl)}, next update due {ends} "
          "(renew it before then with certs revoke: past it, every handshake fails)")  # fmt: skip
    for path in revoked.written:
        print(f"wrote {shown(path)} ({path.stat().st_mode & 0o777:04o})")
    secrets = shown(folder / SECRETS_DIR / CRL_FILE)
    print(
        f"deliver, mounted as a file ({file_var(CRL_VAR)}={SECRETS_MOUNT}/{CRL_FILE} from "
        f"{secrets}): replaced in place; docker kill -s HUP CONTAINER, on every container of the "
        "cluster: new connections with these certificates are refused and open ones are closed"
    )
    print(
        f'deliver, as a value (-e {CRL_VAR}="$(cat {shown(folder / CRL_PEM)})", or --env-file '
        f"{shown(folder / CLUSTER_ENV)}): a new container (a running one keeps its environment)"
    )
    print(
        "deliver, on Compute Engine: gcloud secrets versions add dask-cluster-crl "
        f"--data-file={shown(folder / CRL_PEM)}, then on each VM: sudo systemctl reload dask-tls"
    )
    return 0


def serial(text: str) -> int:
    """A serial as `certs inspect` prints it: hex, with or without 0x or colons."""
    try:
        return int(text.replace(":", "").removeprefix("0x"), 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hexadecimal serial") from None


def run_inspect(args: argparse.Namespace) -> int:
    contents = {path: read(path) for path in args.files}
    for path, data in contents.items():
        for line in certs.describe(path, data):
            print(line)
    keys = [p for p, data in contents.items() if b"PRIVATE KEY-----" in data]
    leaves = [p for p, data in contents.items() if b"CERTIFICATE-----" in data]
    for key in keys:
        for leaf in leaves:
            if key != leaf:
                print(matching(key, leaf, certs.key_matches(contents[key], contents[leaf])))
    return 0


def matching(key: Path, leaf: Path, matches: bool | None) -> str:
    if matches is None:
        return f"cannot tell whether {key} matches the certificate in {leaf}: see the lines above"
    return f"{key} {'matches' if matches else 'does not match'} the certificate in {leaf}"


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ToolError(f"{path}: cannot read it: {error.strerror}") from None


def print_clients(folder: Path, clients: dict[str, certs.Issued]) -> None:
    for name, issued in clients.items():
        pem, key, p12 = (shown(folder / file) for file in client_files(name))
        kind = "viewer (the dashboard only)" if certs.is_viewer(issued.cert) else "client"
        print(f"\n{kind} {name}: {pem}, {key}; browser: {p12}")


def checked_days(days: float) -> float:
    if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
        raise ToolError(f"--days {days:g}: give a number of days above 0, at most {MAX_DAYS}")
    return days


def checked_names(names: list[str] | None) -> tuple[str, ...] | None:
    """Host names (a leading `*.` allowed) and IP addresses, as the certificate will carry them."""
    for name in names or []:
        if not (is_ip_address(name) or is_host_name(name)):
            raise ToolError(
                f"--name {name!r}: not a host name or IP address; "
                "give one the clients use, e.g. --name dask.example.com --name 203.0.113.7"
            )
    return tuple(dict.fromkeys(names)) if names else None


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_host_name(name: str) -> bool:
    labels = name.removeprefix("*.").removesuffix(".").split(".")
    return len(name) <= 253 and all(DNS_LABEL.fullmatch(label) for label in labels)


def checked_viewers(viewers: list[str], clients: list[str]) -> tuple[str, ...]:
    both = sorted(set(viewers) & set(clients))
    if both:
        raise ToolError(f"--viewer {both[0]}: also given as --client; a certificate is one or the "
                        "other")  # fmt: skip
    return checked_clients(viewers, "--viewer")


def checked_clients(clients: list[str], flag: str = "--client") -> tuple[str, ...]:
    for name in clients:
        if not CLIENT_NAME.fullmatch(name) or name.endswith("-key"):
            raise ToolError(
                f"{flag} {name!r}: not usable as a file name; give letters, digits, '.', '_' "
                f"or '-' (not ending in -key), e.g. {flag} alice"
            )
        if name in TAKEN:
            raise ToolError(f"{flag} {name}: the {name}'s own files have that name; pick another")
    return tuple(dict.fromkeys(clients))


def users_folder(folder: Path, flag: str) -> None:
    """In the image, refuse a folder that is not the user's: one not under the mounted one."""
    if not in_image():
        return
    cwd = Path.cwd().resolve()
    if cwd == APP_DIR:
        raise ToolError(f"{flag} {folder}: the working directory is the image's own; {MOUNT_HINT}")
    if not folder.resolve().is_relative_to(cwd):
        raise ToolError(
            f"{flag} {folder}: is outside the working directory {cwd}, the one folder of yours "
            f"mounted here; give a path under it (e.g. {flag} certs) and {MOUNT_HINT}"
        )


def shown(path: Path) -> str:
    """`path` for the user's shell, double-quoted: `"$PWD/..."` under the working directory."""
    cwd, resolved = Path.cwd().resolve(), path.resolve()
    if resolved.is_relative_to(cwd):
        relative = "".join(f"/{part}" for part in resolved.relative_to(cwd).parts)
        return f'"$PWD{quotable(relative)}"'
    return f'"{quotable(str(resolved))}"'


def quotable(text: str) -> str:
    """`text` escaped for the inside of double quotes."""
    return re.sub(r'(["$`\\])', r"\\\1", text)


def writable_folder(folder: Path, flag: str) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise ToolError(f"{flag} {folder}: cannot make it: {error.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ToolError(
            f"{flag} {folder}: not writable for uid {os.getuid()}; give a folder of yours"
        )


def written(write: Callable[[], Made]) -> Made:
    """Run `write`, reporting a file that cannot be written in one line."""
    try:
        return write()
    except OSError as error:
        raise ToolError(f"{error.filename}: cannot write it: {error.strerror}") from None

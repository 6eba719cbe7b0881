"""For the client's side: a dask config file that makes plain `Client("tls://HOST:8786")` use the
cluster's certificates, or, in code, `connect("tls://HOST:8786")`. Needs only distributed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from entrypoint.contract import CA_PEM, client_files
from entrypoint.errors import ToolError
from entrypoint.mounts import mount_of
from entrypoint.tools.image import in_image

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_CONFIG = Path("~/.config/dask/dask-tls.yaml")
# distributed's template says http unless the client itself has dashboard certificates: ours is
# HTTPS (the image's default, DASHBOARD_PROTOCOL=https)
DASHBOARD_LINK = "https://{host}:{port}/status"
SAME_PATH_MOUNT = '-v "$PWD:$PWD" -w "$PWD"'


def tls_config(certs: Path, client: str = "client") -> dict[str, Any]:
    """Dask config: require encryption and use `certs`/{ca,<client>,<client>-key}.pem; dashboard
    links in https."""
    certs = certs.expanduser().resolve()
    cert, key, _ = client_files(client)
    return {
        "distributed": {
            "comm": {
                "require-encryption": True,
                "default-scheme": "tls",
                "tls": {
                    "ca-file": str(certs / CA_PEM),
                    "client": {"cert": str(certs / cert), "key": str(certs / key)},
                },
            },
            "dashboard": {"link": DASHBOARD_LINK},
        }
    }


def write_config(certs: Path, client: str = "client", path: Path = DEFAULT_CONFIG) -> Path:
    """Write the config where dask looks (~/.config/dask/ unless DASK_CONFIG says otherwise).

    Raises ToolError, before writing anything, when a certificate file is missing or, in a
    container, when a path would mean nothing on the host."""
    config = tls_config(certs, client)
    tls = config["distributed"]["comm"]["tls"]
    for needed in map(Path, (tls["ca-file"], tls["client"]["cert"], tls["client"]["key"])):
        if not needed.is_file():
            raise ToolError(
                f"{needed} does not exist: pass --certs the directory `certs new` wrote "
                "and --client one of the clients it issued"
            )
        require_host_path(needed)
    path = path.expanduser().resolve()
    require_host_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def require_host_path(path: Path) -> None:
    """From a checkout, any path. From the image, `path` must lie on a host directory mounted at
    the same path: otherwise the file is lost with the container, or the path written into the
    config names nothing on the host."""
    if not in_image():
        return
    mount = mount_of(path)
    if mount.point == "/" or mount.fstype == "tmpfs":
        raise ToolError(
            f"{path} is inside the container and is lost when it exits: run with "
            f"{SAME_PATH_MOUNT} and give a path under it, e.g. --out dask-tls.yaml"
        )
    if mount.root != "/" and not mount.point.endswith(mount.root):
        raise ToolError(
            f"{path} is a container path ({mount.point} is {mount.root} on the host): mount "
            f"your directory at the same path, {SAME_PATH_MOUNT}"
        )


def connect(
    address: str, certs: str | Path = "certs", client: str = "client", **kwargs: Any
) -> Client:
    """`connect("tls://HOST:8786")`: a Client with the certificates `certs new` wrote. Also makes
    this process's `client.dashboard_link` an https URL (dask's config is global)."""
    import dask
    from distributed import Client  # imported here: writing a config needs no distributed
    from distributed.security import Security

    link: str = dask.config.get("distributed.dashboard.link")
    dask.config.set({"distributed.dashboard.link": link.replace("{scheme}", "https")})
    directory = Path(certs).expanduser()
    cert, key, _ = client_files(client)
    security = Security(
        tls_ca_file=str(directory / CA_PEM),
        tls_client_cert=str(directory / cert),
        tls_client_key=str(directory / key),
        require_encryption=True,
    )
    return Client(address, security=security, **kwargs)

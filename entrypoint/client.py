"""For the client's side: a dask config file that makes plain `Client("tls://HOST:8786")` use the
cluster's certificates, or, in code, `connect("tls://HOST:8786")`. Needs only distributed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_CONFIG = Path("~/.config/dask/dask-tls.yaml")


def tls_config(certs: Path, client: str = "client") -> dict[str, Any]:
    """Dask config: require encryption and use `certs`/{ca,<client>,<client>-key}.pem."""
    certs = certs.expanduser().resolve()
    return {
        "distributed": {
            "comm": {
                "require-encryption": True,
                "default-scheme": "tls",
                "tls": {
                    "ca-file": str(certs / "ca.pem"),
                    "client": {
                        "cert": str(certs / f"{client}.pem"),
                        "key": str(certs / f"{client}-key.pem"),
                    },
                },
            }
        }
    }


def write_config(certs: Path, client: str = "client", path: Path = DEFAULT_CONFIG) -> Path:
    """Write the config where dask looks (~/.config/dask/ unless DASK_CONFIG says otherwise)."""
    config = tls_config(certs, client)
    tls = config["distributed"]["comm"]["tls"]
    for needed in (tls["ca-file"], tls["client"]["cert"], tls["client"]["key"]):
        if not Path(needed).exists():
            raise FileNotFoundError(f"no {needed}: run `certs new` first")
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def connect(
    address: str, certs: str | Path = "certs", client: str = "client", **kwargs: Any
) -> Client:
    """`connect("tls://HOST:8786")`: a Client with the certificates `certs new` wrote."""
    from distributed import Client  # imported here: writing a config needs no distributed
    from distributed.security import Security

    directory = Path(certs).expanduser()
    security = Security(
        tls_ca_file=str(directory / "ca.pem"),
        tls_client_cert=str(directory / f"{client}.pem"),
        tls_client_key=str(directory / f"{client}-key.pem"),
        require_encryption=True,
    )
    return Client(address, security=security, **kwargs)

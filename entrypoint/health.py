"""Docker HEALTHCHECK: healthy when the scheduler answers over mutual TLS with this container's
workers registered (role all: all N; scheduler: none needed; worker: N named after this container).
Runs under `env -i`, so it reads what it needs from the private directory."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from distributed.core import rpc
from distributed.security import Security

from entrypoint.cluster import Plan
from entrypoint.contract import CA_FILE, CERT_FILE, KEY_FILE
from entrypoint.errors import StartupError
from entrypoint.private_files import private_dir
from entrypoint.rotation import crl_line, expiry_line

TIMEOUT = 5.0


async def ask_identity(address: str, security: Security, with_workers: bool) -> dict[str, Any]:
    async with rpc(address, connection_args=security.get_connection_args("client")) as scheduler:
        identity: dict[str, Any] = await scheduler.identity(n_workers=-1 if with_workers else 0)
    return identity


def registered(plan: Plan, identity: dict[str, Any]) -> int:
    """How many of this container's workers the scheduler knows."""
    if plan.role != "worker":
        return int(identity["n_workers"])
    prefix = f"{plan.worker_name}-"
    names = [str(w.get("name")) for w in identity.get("workers", {}).values()]
    return sum(name == plan.worker_name or name.startswith(prefix) for name in names)


def check(plan: Plan) -> str | None:
    """None when healthy, else what is wrong."""
    security = Security(
        tls_ca_file=plan.path(CA_FILE),
        tls_client_cert=plan.path(CERT_FILE),
        tls_client_key=plan.path(KEY_FILE),
        require_encryption=True,
    )
    asking = ask_identity(plan.scheduler_address, security, with_workers=plan.role == "worker")
    try:
        identity = asyncio.run(asyncio.wait_for(asking, TIMEOUT))
    except (OSError, TimeoutError) as error:
        return f"the scheduler does not answer over TLS at {plan.scheduler_address}: {error}"
    workers = registered(plan, identity)
    if workers < plan.workers:
        return f"{workers} of {plan.workers} workers registered"
    return None


def main() -> int:
    try:
        plan = Plan.load(private_dir())
    except FileNotFoundError:
        print("unhealthy: the cluster has not started")
        return 1
    except StartupError as error:
        print(f"unhealthy: {error}")
        return 1
    problem = check(plan)
    soon, expiry = expiry_line(plan.expiry, datetime.now(UTC))
    if plan.crl_next_update:
        crl_soon, crl = crl_line(datetime.fromisoformat(plan.crl_next_update), datetime.now(UTC))
        soon, expiry = soon or crl_soon, f"{expiry}; {crl}"
    state = (
        f"unhealthy: {problem}" if problem else f"healthy: role {plan.role}, {plan.workers} workers"
    )
    print(f"{state}; {'WARNING: ' if soon else ''}{expiry}")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())

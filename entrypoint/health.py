"""Docker HEALTHCHECK: healthy when the scheduler answers over mutual TLS with every worker
registered. Runs under `env -i`, so it reads what it needs from the private directory."""

from __future__ import annotations

import asyncio
import sys

from distributed.core import rpc
from distributed.security import Security

from entrypoint.cluster import CA_FILE, CERT_FILE, KEY_FILE, Plan
from entrypoint.private_files import PRIVATE_DIR

TIMEOUT = 5.0


async def count_workers(address: str, security: Security) -> int:
    async with rpc(address, connection_args=security.get_connection_args("client")) as scheduler:
        identity = await scheduler.identity(n_workers=0)
    return int(identity["n_workers"])


def check(plan: Plan) -> str | None:
    """None when healthy, else what is wrong."""
    security = Security(
        tls_ca_file=plan.path(CA_FILE),
        tls_client_cert=plan.path(CERT_FILE),
        tls_client_key=plan.path(KEY_FILE),
        require_encryption=True,
    )
    try:
        workers = asyncio.run(
            asyncio.wait_for(count_workers(plan.local_scheduler, security), TIMEOUT)
        )
    except (OSError, TimeoutError) as error:
        return f"the scheduler does not answer over TLS at {plan.local_scheduler}: {error}"
    if workers < plan.workers:
        return f"{workers} of {plan.workers} workers registered"
    return None


def main() -> int:
    try:
        plan = Plan.load(PRIVATE_DIR)
    except FileNotFoundError:
        print("unhealthy: the cluster has not started")
        return 1
    problem = check(plan)
    print(f"unhealthy: {problem}" if problem else f"healthy: {plan.workers} workers")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())

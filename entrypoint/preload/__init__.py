"""The preload of every scheduler, nanny and worker (`distributed.*.preload`): what distributed
lacks for a cluster that only its certificate holders can use, and for a lean start.

One module per upstream behaviour this changes, each naming the upstream code it covers, each with
a test against distributed's real classes (tests/test_preload.py) that fails when an upgrade of
distributed makes the change stop working:

- handshake_timeout: TLS listeners drop a peer that does not finish its handshake (comm/tcp.py).
- http_client_certificates: the HTTP servers (8787, each worker's /health and /metrics) ask for a
  client certificate from the cluster's CA (node.py).
- client_versions: a client with other versions than the cluster's is refused at connect
  (scheduler.py).
- retire_keeps_nanny: a worker the scheduler retires closes its process but not its nanny, which
  starts a fresh one (worker.py).
- certificate_reload: a renewed certificate reaches every TLS context (security.py reads the files
  once).
- lean_forkserver: workers fork from a forkserver that imported distributed alone (utils.py).
- revocation: the CA's revocation list in every TLS context, reloaded, and the open connections of
  the certificates it revokes closed (security.py, core.py).
- viewer_comms: a viewer's certificate opens no comm (core.py, `Server.handle_comm`).
- viewer_dashboard: a viewer's certificate only reads the HTTP ports (node.py).
- drain_on_stop: a stop signal to `dask worker` moves its workers' results to other workers
  first, within a budget (cli/dask_worker.py, nanny.py).
- autoscale: a scheduler given a managed instance group of worker VMs sizes it from its own
  demand, as deploy/adaptive.py does from a client (entrypoint.autoscaling).

forked_forkserver lives here too but is not imported by the preload: it must run before `dask
worker` starts a thread or an event loop, so entrypoint.forks calls it.

distributed imports a preload while it constructs the server, before it listens on any port or
builds its HTTP server or handler table: what `install()` changes at import is in place from the
first connection on. `dask_setup(server)` runs once the server has started, `dask_teardown(server)`
as it closes.
"""

from __future__ import annotations

from distributed.node import ServerNode

from entrypoint.preload import (
    autoscale,
    certificate_reload,
    client_versions,
    drain_on_stop,
    handshake_timeout,
    http_client_certificates,
    lean_forkserver,
    retire_keeps_nanny,
    revocation,
    viewer_comms,
    viewer_dashboard,
)

# in this order: viewer_dashboard and revocation wrap what http_client_certificates installs
for change in (
    handshake_timeout, http_client_certificates, client_versions, lean_forkserver,
    viewer_comms, viewer_dashboard, revocation, drain_on_stop,
):  # fmt: skip
    change.install()


def dask_setup(server: ServerNode) -> None:
    """Called by distributed once the server has started."""
    certificate_reload.setup(server)
    revocation.setup(server)
    retire_keeps_nanny.setup(server)
    drain_on_stop.setup(server)
    autoscale.setup(server)


def dask_teardown(server: ServerNode) -> None:
    """Called by distributed as the server closes."""
    autoscale.teardown(server)

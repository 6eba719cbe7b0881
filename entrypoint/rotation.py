"""A new certificate without a restart. On SIGHUP the supervisor reads the material given as files
(`DASK_CLUSTER_*_FILE`) again, checks it as at start, and replaces the certificate and key in the
private directory; every scheduler, nanny and worker process then loads them into its TLS contexts
(see `preload.certificate_reload`), so new connections get the new certificate and open ones
carry on.

Material given as values (`-e DASK_CLUSTER_CERT=...`) cannot change in a running container, and a
new CA needs a new container: both are refused with one line, and the old material stays.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint import settings
from entrypoint.cluster import Plan
from entrypoint.contract import (
    CA_FILE,
    CA_VAR,
    CERT_FILE,
    CERT_VAR,
    KEY_FILE,
    KEY_VAR,
    PLAN_FILE,
    file_var,
)
from entrypoint.errors import StartupError
from entrypoint.private_files import replace_private_files

if TYPE_CHECKING:
    from entrypoint.tls import Material

log = logging.getLogger("entrypoint")


class ReloadRefused(StartupError):
    """The running material stays; the message says why, in one line."""


def reload(plan: Plan, now: datetime) -> tuple[Plan, Material]:
    """Check the files' material and swap it in; raise ReloadRefused (or ConfigError) otherwise."""
    from entrypoint import tls  # cryptography: only the supervisor's reload needs it

    files = plan.secret_files
    for name in (CERT_VAR, KEY_VAR):
        if file_var(name) not in files:
            raise ReloadRefused(
                f"{name} was given as a value, which a running container cannot change: "
                f"give it as {file_var(name)} (a mounted file) to rotate without a restart"
            )
    running_ca = Path(plan.path(CA_FILE)).read_bytes()
    # a CA or passphrase given as a value is not in our environment any more: the CA cannot
    # change anyway, and an encrypted key then says which variable is missing
    environ = {CA_VAR: running_ca.decode(), **files}
    if file_var(CA_VAR) in files:
        del environ[CA_VAR]
    material = tls.check(settings.read_pems(environ), now)
    if material.ca_pem != running_ca:
        raise ReloadRefused(
            "the new certificate comes with another CA (or is self-signed): a new CA needs a new "
            "container; renew from the same CA (certs renew) to rotate without a restart"
        )
    renewed = dataclasses.replace(plan, expires=material.not_after.isoformat())
    # the key first: the processes watch the certificate, and load both when it changes
    replace_private_files(
        Path(plan.directory),
        {KEY_FILE: material.key_pem, CERT_FILE: material.cert_pem, PLAN_FILE: renewed.to_json()},
    )
    return renewed, material


def expiry_line(expires: datetime, now: datetime) -> tuple[bool, str]:
    """(whether to warn, a line saying when the served certificate expires)."""
    left = expires - now
    line = f"the cluster certificate expires on {expires:%Y-%m-%d %H:%M} UTC, in {left.days} days"
    soon = left < settings.EXPIRY_WARNING
    return soon, line + ("; renew it soon (certs renew, then docker kill -s HUP)" if soon else "")


class ServedCertificate:
    """The supervisor's view of the certificate the cluster serves: reloads it, says when it
    expires."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def reload(self) -> None:
        try:
            self.plan, material = reload(self.plan, datetime.now(UTC))
        except (StartupError, OSError) as error:
            log.error("SIGHUP: kept the running certificate: %s", error)
            return
        log.info(
            "SIGHUP: serving the new certificate (serial %x) to new connections; %s",
            material.serial, expiry_line(self.plan.expiry, datetime.now(UTC))[1],
        )  # fmt: skip

    def report(self) -> None:
        soon, line = expiry_line(self.plan.expiry, datetime.now(UTC))
        log.log(logging.WARNING if soon else logging.INFO, "%s", line)

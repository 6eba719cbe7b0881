"""A new certificate or revocation list without a restart. On SIGHUP the supervisor reads the
material given as files (`DASK_CLUSTER_*_FILE`) again, checks it as at start, and replaces the
certificate, key and CRL in the private directory; every scheduler, nanny and worker process then
loads them into its TLS contexts (see `preload.certificate_reload` and `preload.revocation`), so
new connections get the new certificate and the new list, open connections carry on, except those
of a certificate the list now revokes, which are closed.

Material given as values (`-e DASK_CLUSTER_CERT=...`) cannot change in a running container, and a
new CA needs a new container: both are refused with one line, and the old material stays. Whatever
the files hold, a reload never stops the cluster: any failure keeps the running material and says
why in one line.
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
    CRL_FILE,
    CRL_VAR,
    KEY_FILE,
    KEY_VAR,
    PASSPHRASE_VAR,
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
    if not any(file_var(name) in files for name in (CERT_VAR, KEY_VAR, CRL_VAR)):
        raise ReloadRefused(
            f"{CERT_VAR} was given as a value, which a running container cannot change: "
            f"give it as {file_var(CERT_VAR)} (a mounted file) to rotate without a restart"
        )
    running_ca = Path(plan.path(CA_FILE)).read_bytes()
    material = tls.check(settings.read_pems(_reload_environ(plan, running_ca)), now)
    if material.ca_pem != running_ca:
        raise ReloadRefused(
            "the new certificate comes with another CA (or is self-signed): a new CA needs a new "
            "container; renew from the same CA (certs renew) to rotate without a restart"
        )
    renewed = dataclasses.replace(plan, expires=material.not_after.isoformat())
    renewed = renewed.with_revocation_list(plan.revocation_list, material.crl_next_update)
    crl = {CRL_FILE: material.crl_pem} if material.crl_pem and plan.revocation_list else {}
    # the key first: the processes watch the certificate, and load both when it changes
    replace_private_files(
        Path(plan.directory),
        {KEY_FILE: material.key_pem, CERT_FILE: material.cert_pem, **crl,
         PLAN_FILE: renewed.to_json()},
    )  # fmt: skip
    return renewed, material


def _reload_environ(plan: Plan, running_ca: bytes) -> dict[str, str]:
    """The files given, and for what was given as a value (gone from our environment), the
    running material from the private directory: the whole set is checked together. A list given
    as a value cannot change, and one that was never given cannot be added (the processes were not
    started to enforce one)."""
    running = {CERT_VAR: CERT_FILE, KEY_VAR: KEY_FILE, CA_VAR: CA_FILE}
    if plan.revocation_list:
        running[CRL_VAR] = CRL_FILE
    environ = {
        name: Path(plan.path(file)).read_text()
        for name, file in running.items()
        if file_var(name) not in plan.secret_files
    }
    environ.update(plan.secret_files)
    if not plan.revocation_list:
        environ.pop(file_var(CRL_VAR), None)
    if KEY_VAR in environ:  # the running key, in clear: a passphrase would not fit it
        environ.pop(file_var(PASSPHRASE_VAR), None)
    return environ


def expiry_line(expires: datetime, now: datetime) -> tuple[bool, str]:
    """(whether to warn, a line saying when the served certificate expires)."""
    left = expires - now
    line = f"the cluster certificate expires on {expires:%Y-%m-%d %H:%M} UTC, in {left.days} days"
    soon = left < settings.EXPIRY_WARNING
    return soon, line + ("; renew it soon (certs renew, then docker kill -s HUP)" if soon else "")


def crl_line(next_update: datetime, now: datetime) -> tuple[bool, str]:
    """(whether to warn, a line saying when the revocation list must be renewed): past its next
    update, OpenSSL refuses every peer."""
    left = next_update - now
    line = (
        f"{CRL_VAR}: the revocation list's next update is due on {next_update:%Y-%m-%d %H:%M} "
        f"UTC, in {left.days} days"
    )
    soon = left < settings.EXPIRY_WARNING
    fix = "; renew it (certs revoke --certs DIR), or every handshake fails from then on"
    return soon, line + (fix if soon else "")


class ServedCertificate:
    """The supervisor's view of the certificate the cluster serves: reloads it, says when it
    expires."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def reload(self) -> None:
        """Never raises: PID 1 runs this, and no file may take the cluster down."""
        try:
            self.plan, material = reload(self.plan, datetime.now(UTC))
        except (StartupError, OSError) as error:
            log.error("SIGHUP: kept the running certificate: %s", error)
            return
        except Exception as error:  # a bug of ours or a library's: still one line
            log.error("SIGHUP: kept the running certificate: unexpected %s: %s",
                      type(error).__name__, str(error)[:200])  # fmt: skip
            return
        log.info(
            "SIGHUP: serving the new certificate (serial %x) to new connections; %s%s",
            material.serial, expiry_line(self.plan.expiry, datetime.now(UTC))[1],
            self._crl_part(material),
        )  # fmt: skip

    def _crl_part(self, material: Material) -> str:
        if not self.plan.revocation_list or material.crl_pem is None:
            return ""
        from cryptography import x509

        revoked = len(x509.load_pem_x509_crl(material.crl_pem))
        return f"; the revocation list revokes {revoked} certificates"

    def report(self) -> None:
        for soon, line in self.lines(datetime.now(UTC)):
            log.log(logging.WARNING if soon else logging.INFO, "%s", line)

    def lines(self, now: datetime) -> list[tuple[bool, str]]:
        """The daily report: the certificate's expiry, and the revocation list's next update."""
        lines = [expiry_line(self.plan.expiry, now)]
        if self.plan.crl_next_update:
            lines.append(crl_line(datetime.fromisoformat(self.plan.crl_next_update), now))
        return lines

"""A real browser opens the dashboard: Debian's Chromium, headless, driven by Playwright, with the
`.p12` that `certs new` writes in its NSS database (imported as a user would) and a managed policy
that picks that certificate for the dashboard without asking."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import pytest
from distributed import Client
from distributed.security import Security
from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as BrowserError

from entrypoint.contract import DASHBOARD_PORT, SCHEDULER_PORT
from tests.containers import Container, healthy_container

pytestmark = pytest.mark.container
ROOT = Path(__file__).parents[1]
CHROMIUM = Path("/usr/bin/chromium")
HOST = "dask-tls.test"  # the cluster certificate's name; the browser maps it to the container
STATUS = f"https://{HOST}:{DASHBOARD_PORT}/status"
POLICIES = Path("/etc/chromium/policies/managed")
CHROMIUM_ARGS = (
    "--no-sandbox",  # Chromium's sandbox refuses to run as root
    # no calls home (this machine's network is closed)
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# The values of a column in every data source of the page's Bokeh documents: the plots draw into
# canvases, so the documents (fed over the dashboard's websocket) are what a test can read.
COLUMN_ON_PAGE = """(name) => {
    const values = [];
    for (const doc of (window.Bokeh && Bokeh.documents) || []) {
        for (const model of doc.all_models) {
            const data = model.data;
            const column = data instanceof Map ? data.get(name) : data && data[name];
            values.push(...(column || []));
        }
    }
    return values;
}"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `certs new` writes for a cluster reached as HOST, with a client named browser."""
    if not CHROMIUM.exists() or not shutil.which("pk12util"):
        pytest.fail("chromium is missing: `make test` installs it (docker/system-tools.sh)")
    directory = tmp_path_factory.mktemp("browser-certs")
    subprocess.run(
        [sys.executable, "-m", "entrypoint", "certs", "new", "--out", str(directory),
         "--name", HOST, "--client", "browser"],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def dashboard(image: str, certs: Path) -> Iterator[Container]:
    env = {
        "DASK_CLUSTER_CERT": (certs / "cluster.pem").read_text(),
        "DASK_CLUSTER_KEY": (certs / "cluster-key.pem").read_text(),
        "DASK_CLUSTER_CA": (certs / "ca.pem").read_text(),
        "NUM_WORKERS": "2",
        "MEMORY_PER_WORKER": "1",  # 1 GB: what the test holds shows in the memory plots
    }
    yield from healthy_container(image, env)


@pytest.fixture
def certificate_policy() -> Iterator[None]:
    """Chromium's managed policy: the dashboard gets the certificate that fits, without a prompt."""
    created = [d for d in (POLICIES.parent, POLICIES) if not d.exists()]
    POLICIES.mkdir(parents=True, exist_ok=True)
    policy = POLICIES / f"dask-tls-test-{os.getpid()}.json"
    pattern = json.dumps({"pattern": f"https://{HOST}:{DASHBOARD_PORT}", "filter": {}})
    policy.write_text(json.dumps({"AutoSelectCertificateForUrls": [pattern]}))
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)
        for directory in reversed(created):
            with contextlib.suppress(OSError):  # another run's policy may be there now
                directory.rmdir()


def nss_home(home: Path, certs: Path, *, with_p12: bool) -> Path:
    """A $HOME whose NSS database trusts the cluster's CA and, with_p12, holds the browser's
    certificate and key, imported from the .p12 as the README tells a user to."""
    database = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    commands = [["certutil", "-N", "-d", database, "--empty-password"]]
    if with_p12:
        commands.append(["pk12util", "-i", str(certs / "browser.p12"), "-d", database, "-W", ""])
    commands.append(
        ["certutil", "-A", "-d", database, "-n", "dask-tls CA", "-t", "C,,",
         "-i", str(certs / "ca.pem")]
    )  # fmt: skip
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    return home


@contextlib.contextmanager
def chromium(home: Path, ip: str) -> Iterator[BrowserContext]:
    """Headless Chromium with `home` as $HOME (so its NSS database), HOST mapped to `ip`."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            home / "profile",
            executable_path=CHROMIUM,
            headless=True,
            env={**os.environ, "HOME": str(home)},
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} {ip}"],
            viewport={"width": 1200, "height": 760},
        )
        try:
            yield context
        finally:
            context.close()


def column_on_page(
    page: Page, name: str, enough: Callable[[list[Any]], bool], timeout: float = 60
) -> list[Any]:
    """The values of the column `name` on the page, once they are `enough` or the time is up."""
    deadline = time.monotonic() + timeout
    values: list[Any]
    while not enough(values := page.evaluate(COLUMN_ON_PAGE, name)):
        if time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    return values


def security(certs: Path) -> Security:
    return Security(
        tls_ca_file=str(certs / "ca.pem"),
        tls_client_cert=str(certs / "browser.pem"),
        tls_client_key=str(certs / "browser-key.pem"),
        require_encryption=True,
    )


def test_a_browser_with_the_p12_sees_the_workers(
    dashboard: Container, certs: Path, certificate_policy: None, tmp_path: Path
) -> None:
    """With the .p12 imported, /status loads, its plots hold both workers and its task stream draws
    the tasks run during the visit; a screenshot is kept (docs/dashboard.png is one)."""
    home = nss_home(tmp_path / "home", certs, with_p12=True)
    with Client(
        f"tls://{dashboard.ip}:{SCHEDULER_PORT}", security=security(certs), timeout="30s"
    ) as client:
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        array = client.persist(da.random.random((4000, 4000), chunks=500))  # for the memory plots
        with chromium(home, dashboard.ip) as browser:
            page = browser.new_page()
            page.goto(STATUS, timeout=60_000)
            shown = column_on_page(page, "worker", lambda shown: workers <= set(shown))
            assert workers <= set(shown)
            client.compute((array + array.T).sum(axis=0)).result()
            assert column_on_page(page, "worker_thread", bool)  # the task stream's rectangles
            running = client.map(time.sleep, [30] * 4, pure=False)  # for Processing, Progress
            assert column_on_page(page, "nprocessing", any)
            page.screenshot(path=tmp_path / "dashboard.png")
        client.cancel(running)


def test_a_browser_without_a_certificate_gets_no_page(
    dashboard: Container, certs: Path, tmp_path: Path
) -> None:
    """The same browser trusting the cluster's CA but holding no certificate: the dashboard asks
    for one and the page does not load."""
    home = nss_home(tmp_path / "home", certs, with_p12=False)
    with chromium(home, dashboard.ip) as browser:
        page = browser.new_page()
        # TLS 1.3 refuses after the handshake, so Chromium names it either way
        refused = r"net::ERR_(BAD_SSL_CLIENT_AUTH_CERT|SOCKET_NOT_CONNECTED|CONNECTION_RESET)"
        with pytest.raises(BrowserError, match=refused):
            page.goto(STATUS, timeout=60_000)

"""Google Compute Engine, offline: the rendered user-data is valid cloud-config; its fetch script,
run against a stand-in for the metadata server and Secret Manager on loopback, writes the private
files; the exact `docker run` line it holds gives a working cluster; gcloud is driven as printed."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from entrypoint.certs import new_cluster
from entrypoint.cli import main
from entrypoint.client import connect
from entrypoint.gce import Deployment, user_data
from tests.containers import DOCKER, docker

PROJECT, TOKEN = "test-project", "test-token"


class FakeGoogle(BaseHTTPRequestHandler):
    """The metadata server and Secret Manager's `versions/latest:access`, as curl sees them."""

    secrets: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path.startswith("/computeMetadata/v1/"):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.answer(403, b"missing Metadata-Flavor")
            if self.path.endswith("/project/project-id"):
                return self.answer(200, PROJECT.encode())
            token = {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            return self.answer(200, json.dumps(token).encode())
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, b"no token")
        name = self.path.split("/secrets/")[1].split("/")[0]
        payload = {"data": base64.b64encode(self.secrets[name]).decode(), "dataCrc32c": "0"}
        body = json.dumps({"name": name, "payload": payload}, indent=2)  # pretty, as Google's
        return self.answer(200, body.encode())

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_google() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGoogle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def rendered(deployment: Deployment) -> dict[str, str]:
    """path -> content of each file the user-data writes."""
    config = yaml.safe_load(user_data(deployment))
    return {entry["path"]: entry["content"] for entry in config["write_files"]}


def test_user_data_is_valid_cloud_config(tmp_path: Path) -> None:
    """`cloud-init schema` (Debian's cloud-init) accepts the rendered user-data."""
    if not shutil.which("cloud-init"):
        pytest.fail("cloud-init is missing: apt-get install cloud-init (see .ci/run)")
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data(Deployment(project="p", image="img", source_ranges=("10.0.0.0/8",))))
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stderr


@pytest.mark.container
@pytest.mark.skipif(
    os.geteuid() != 0, reason="the fetch script chowns to uid 10001, as root on the VM"
)
def test_fetch_script_and_docker_run_line_give_a_cluster(
    image: str, tmp_path: Path, fake_google: str
) -> None:
    """The user-data's own script fetches the PEMs into a 0700 directory of 0600 files owned by
    the image's user; its own `docker run` line then serves a cluster a client computes on."""
    certs = tmp_path / "certs"
    new_cluster(certs)
    deployment = Deployment(
        project=PROJECT, image=image, source_ranges=("127.0.0.1/32",),
        secrets_dir=str(tmp_path / "run"), container=f"gce-test-{os.getpid()}",
        ports=("127.0.0.1:0", "127.0.0.1:0"), sizing={"NUM_WORKERS": "2"},
    )  # fmt: skip
    FakeGoogle.secrets = {
        deployment.secrets["cert"]: (certs / "cluster.pem").read_bytes(),
        deployment.secrets["key"]: (certs / "cluster-key.pem").read_bytes(),
        deployment.secrets["ca"]: (certs / "ca.pem").read_bytes(),
    }
    files = rendered(deployment)
    script = tmp_path / "fetch-secrets.sh"
    script.write_text(files[deployment.script])
    fetch_env = {**os.environ, "METADATA_URL": f"{fake_google}/computeMetadata/v1",
                 "SECRET_MANAGER_URL": f"{fake_google}/v1"}  # fmt: skip
    subprocess.run(["bash", str(script)], env=fetch_env, check=True, timeout=30)
    secrets = Path(deployment.secrets_dir)
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700 and secrets.stat().st_uid == 10001
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in secrets.iterdir()} == dict.fromkeys(
        ("cert", "key", "ca"), 0o600
    )

    unit = files["/etc/systemd/system/dask-tls.service"]
    [line] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    command = shlex.split(line.removeprefix("ExecStart="))
    command[0] = DOCKER if command[0] != DOCKER else command[0]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        address = ""
        for _ in range(120):
            probe = docker(
                "inspect", "-f", "{{.NetworkSettings.IPAddress}}", deployment.container, check=False
            )
            if address := probe.stdout.strip():
                break
            assert running.poll() is None, running.communicate()[0]
            threading.Event().wait(0.25)
        with connect(f"tls://{address}:8786", certs, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            assert client.submit(sum, [40, 2]).result(timeout=30) == 42
        docker("stop", deployment.container, timeout=30)
        assert running.wait(timeout=30) == 0
    finally:
        docker("rm", "-f", deployment.container, check=False)
        running.kill()


def test_gcloud_is_driven_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--apply runs exactly the printed commands (a stand-in gcloud records them): secrets from
    files, never a PEM on a command line; a firewall rule for the tag and the given ranges only."""
    log = tmp_path / "gcloud.log"
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    args = ["gce", "--project", "p1", "--image", "img:1", "--source-range", "198.51.100.0/24",
            "--out", str(tmp_path / "ud.yaml"), "--certs", "certs"]  # fmt: skip
    assert main([*args, "--apply"]) == 0
    calls = log.read_text().splitlines()
    assert len(calls) == 9
    [firewall] = [c for c in calls if c.startswith("compute firewall-rules create")]
    assert "--source-ranges 198.51.100.0/24" in firewall and "--target-tags dask-server" in firewall
    [vm] = [c for c in calls if c.startswith("compute instances create ")]
    assert "--image-family cos-stable" in vm and f"user-data={tmp_path / 'ud.yaml'}" in vm
    assert all("BEGIN" not in c for c in calls)
    assert sum("--data-file certs/" in c for c in calls) == 3


def test_legacy_path_is_marked_deprecated(capsys: pytest.CaptureFixture[str]) -> None:
    """--legacy prints create-with-container with the base64 env file, and says it is dead."""
    assert (
        main(["gce", "--legacy", "--project", "p", "--image", "i", "--source-range", "10.0.0.0/8"])
        == 0
    )
    out = capsys.readouterr()
    assert (
        "create-with-container" in out.out and "--container-env-file certs/cluster.env" in out.out
    )
    assert "DEPRECATED" in out.err and "2026-07-31" in out.err

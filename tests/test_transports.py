"""Secrets as users' transports deliver them, into the real container; the dashboard's protocol."""

from __future__ import annotations

import base64
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from distributed import Client

from entrypoint.contract import DASHBOARD_PORT
from entrypoint.tools.certs import issue, new_key
from tests.containers import Container
from tests.material import ClusterMaterial, client_security, write_pem_files

pytestmark = pytest.mark.container


def one_line_base64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def test_env_file_and_mounted_secret_with_an_encrypted_key(
    image: str,
    material: ClusterMaterial,
    pems: dict[str, str],
    tmp_path: Path,
) -> None:
    """Certificate and CA as single-line base64 in a `docker run --env-file`, the key encrypted in
    a mounted secret file, its passphrase in a variable: the cluster computes."""
    env_file = tmp_path / "cluster.env"
    env_file.write_text(
        f"DASK_CLUSTER_CERT={one_line_base64(material.cluster.cert_pem)}\n"
        f"DASK_CLUSTER_CA={one_line_base64(material.ca.cert_pem)}\n"
        "DASK_CLUSTER_KEY_FILE=/run/secrets/dask-key\n"
        "NUM_WORKERS=1\n"
    )
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        material.cluster.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"open sesame"),
        )
    )
    key_file.chmod(0o644)  # read by the container's user through the bind mount
    container = Container(
        image,
        {"DASK_CLUSTER_KEY_PASSPHRASE": "open sesame"},
        docker_args=["--env-file", str(env_file), "-v", f"{key_file}:/run/secrets/dask-key:ro"],
    )
    try:
        container.wait_healthy()
        with Client(container.address, security=client_security(pems), timeout="20s") as client:
            assert client.submit(lambda: "ok").result(timeout=30) == "ok"
        assert "-----BEGIN" not in container.logs()
    finally:
        container.remove()


def test_ed25519_certificate_with_literal_newlines(image: str, tmp_path: Path) -> None:
    """An Ed25519 CA and cluster certificate, the PEMs' newlines arriving as literal \\n."""
    ca = issue("ed CA", ca=True, key=new_key("ed25519"))
    cluster = issue("ed cluster", ca, key=new_key("ed25519"))
    env = {
        "DASK_CLUSTER_CERT": cluster.cert_pem.decode().replace("\n", "\\n"),
        "DASK_CLUSTER_KEY": cluster.key_pem.decode().replace("\n", "\\n"),
        "DASK_CLUSTER_CA": ca.cert_pem.decode().replace("\n", "\\n"),
        "NUM_WORKERS": "1",
    }
    files = write_pem_files(tmp_path, ca=ca.cert_pem, cert=cluster.cert_pem, key=cluster.key_pem)
    container = Container(image, env)
    try:
        container.wait_healthy()
        from distributed.security import Security

        sec = Security(
            tls_ca_file=files["ca"], tls_client_cert=files["cert"], tls_client_key=files["key"],
            require_encryption=True,
        )  # fmt: skip
        with Client(container.address, security=sec, timeout="20s") as client:
            assert client.submit(lambda: 7).result(timeout=30) == 7
    finally:
        container.remove()


def test_dashboard_is_plain_http_only_when_asked(image: str, material: ClusterMaterial) -> None:
    """DASHBOARD_PROTOCOL=http serves /health in plain HTTP; HTTPS is refused there."""
    container = Container(
        image, {**material.ca_env(), "NUM_WORKERS": "1", "DASHBOARD_PROTOCOL": "http"}
    )
    try:
        container.wait_healthy()
        port = container.port(DASHBOARD_PORT)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.read() == b"ok"
        with pytest.raises((ssl.SSLError, OSError)):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=10)
    finally:
        container.remove()

"""Certificate checks with `cryptography`: what is accepted and the message each refusal gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from entrypoint.errors import ConfigError
from entrypoint.settings import Pems
from entrypoint.tls import check
from entrypoint.tools.certs import issue, new_key
from tests.material import ClusterMaterial


def settings(cert: bytes, key: bytes, ca: bytes | None = None) -> Pems:
    return Pems(cert_pem=cert, key_pem=key, ca_pem=ca)


def test_seed_self_signed_certificate_is_its_own_ca(material: ClusterMaterial) -> None:
    """The blog's setup: one self-signed certificate, no CA; it is written out as the CA too."""
    checked = check(settings(material.seed.cert_pem, material.seed.key_pem), datetime.now(UTC))
    assert checked.ca_pem == checked.cert_pem == material.seed.cert_pem


def test_certificate_from_a_ca_passes_with_that_ca(material: ClusterMaterial) -> None:
    """A leaf issued by the given CA passes; the CA is written out as given."""
    env = material.ca_env()
    checked = check(
        settings(
            *(env[k].encode() for k in ("DASK_CLUSTER_CERT", "DASK_CLUSTER_KEY", "DASK_CLUSTER_CA"))
        ),
        datetime.now(UTC),
    )
    assert x509.load_pem_x509_certificate(checked.ca_pem) == material.ca.cert


def test_chain_through_an_intermediate_passes() -> None:
    """Leaf + intermediate in the certificate variable, the root in the CA variable."""
    root = issue("root", ca=True)
    intermediate = issue("intermediate", root, ca=True)
    leaf = issue("leaf", intermediate)
    chain = leaf.cert_pem + intermediate.cert_pem
    assert check(settings(chain, leaf.key_pem, root.cert_pem), datetime.now(UTC)).cert_pem == chain


def refusal(config: Pems, now: datetime | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        check(config, now or datetime.now(UTC))
    return str(caught.value)


def test_key_of_another_certificate_is_refused(material: ClusterMaterial) -> None:
    """A key that does not belong to the certificate is named as such."""
    message = refusal(
        settings(material.cluster.cert_pem, material.client.key_pem, material.ca.cert_pem)
    )
    assert message.startswith("DASK_CLUSTER_KEY: the key does not match the certificate")


def test_swapped_certificate_and_key_are_refused(material: ClusterMaterial) -> None:
    """A key where the certificate belongs (and the reverse) says which way round they go."""
    assert "holds a private key, not a certificate" in refusal(
        settings(material.seed.key_pem, material.seed.cert_pem)
    )
    assert "DASK_CLUSTER_KEY: holds a certificate" in refusal(
        settings(material.seed.cert_pem, material.seed.cert_pem)
    )


@pytest.mark.parametrize("text", [b"hello", b"-----BEGIN CERTIFICATE-----\nMIIB\n", b"\x00\x01"])
def test_garbage_certificate_is_refused(material: ClusterMaterial, text: bytes) -> None:
    """Garbage or a truncated PEM is not a certificate."""
    assert refusal(settings(text, material.seed.key_pem)).startswith(
        "DASK_CLUSTER_CERT: is not a PEM certificate"
    )


def test_garbage_key_is_refused(material: ClusterMaterial) -> None:
    """A truncated key is not a key."""
    truncated = material.seed.key_pem[:80]
    assert refusal(settings(material.seed.cert_pem, truncated)).startswith(
        "DASK_CLUSTER_KEY: is not a PEM private key"
    )


def test_certificate_outside_its_validity_is_refused() -> None:
    """Expired and not-yet-valid certificates are refused with their dates."""
    past = issue("old", ca=True, not_before=datetime.now(UTC) - timedelta(days=10), days=2)
    future = issue("new", ca=True, not_before=datetime.now(UTC) + timedelta(days=2))
    assert "the certificate expired on" in refusal(settings(past.cert_pem, past.key_pem))
    assert "is not valid before" in refusal(settings(future.cert_pem, future.key_pem))


def test_certificate_of_another_ca_is_refused(material: ClusterMaterial) -> None:
    """A leaf the given CA did not issue is refused."""
    message = refusal(
        settings(material.intruder.cert_pem, material.intruder.key_pem, material.ca.cert_pem)
    )
    assert message.startswith("DASK_CLUSTER_CERT: the certificate was not issued by the CA")


def test_leaf_issued_by_a_ca_needs_that_ca(material: ClusterMaterial) -> None:
    """Without DASK_CLUSTER_CA, a certificate must be self-signed."""
    message = refusal(settings(material.cluster.cert_pem, material.cluster.key_pem))
    assert message.startswith("DASK_CLUSTER_CA: is not set and the certificate")


def test_ca_that_is_not_a_ca_is_refused(material: ClusterMaterial) -> None:
    """A leaf certificate given as the CA is refused."""
    message = refusal(
        settings(material.cluster.cert_pem, material.cluster.key_pem, material.client.cert_pem)
    )
    assert message.startswith("DASK_CLUSTER_CA: ") and "is not a CA certificate" in message


def test_short_rsa_key_is_refused() -> None:
    """RSA under 2048 bits is refused."""
    weak = issue("weak", ca=True, key=new_key("rsa1024"))
    assert "has 1024 bits, fewer than 2048" in refusal(settings(weak.cert_pem, weak.key_pem))


@pytest.mark.parametrize(
    ("kind", "encoding"),
    [
        ("ec", serialization.PrivateFormat.PKCS8),
        ("ec", serialization.PrivateFormat.TraditionalOpenSSL),  # SEC1: BEGIN EC PRIVATE KEY
        ("rsa2048", serialization.PrivateFormat.PKCS8),
        (
            "rsa2048",
            serialization.PrivateFormat.TraditionalOpenSSL,
        ),  # PKCS#1: BEGIN RSA PRIVATE KEY
        ("ed25519", serialization.PrivateFormat.PKCS8),
    ],
)
def test_key_types_and_encodings(kind: str, encoding: serialization.PrivateFormat) -> None:
    """RSA, EC and Ed25519 keys in PKCS#1, PKCS#8 and SEC1 pass, and are written out as PKCS#8."""
    key = new_key(kind)
    made = issue("k", ca=True, key=key)
    key_pem = key.private_bytes(serialization.Encoding.PEM, encoding, serialization.NoEncryption())
    checked = check(settings(made.cert_pem, key_pem), datetime.now(UTC))
    assert checked.key_pem.splitlines()[0].endswith(b"BEGIN PRIVATE KEY-----")  # PKCS#8 label


@pytest.mark.parametrize(
    "encoding", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_encrypted_key_is_decrypted_with_its_passphrase(
    material: ClusterMaterial, encoding: serialization.PrivateFormat
) -> None:
    """An encrypted key (PKCS#8, or legacy PKCS#1 with Proc-Type headers) opens with its
    passphrase and is written out in clear, for distributed, which cannot take a passphrase."""
    encrypted = material.seed.key.private_bytes(
        serialization.Encoding.PEM, encoding, serialization.BestAvailableEncryption(b"pw")
    )
    config = Pems(
        cert_pem=material.seed.cert_pem, key_pem=encrypted, ca_pem=None, key_passphrase=b"pw"
    )
    assert check(config, datetime.now(UTC)).key_pem == material.seed.key_pem


def test_certificate_near_expiry_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Within 30 days of expiry the cluster starts, with a warning naming the date."""
    soon = issue("soon", ca=True, days=10)
    check(settings(soon.cert_pem, soon.key_pem), datetime.now(UTC))
    assert "DASK_CLUSTER_CERT: the certificate expires on" in caplog.text

"""Secret intake: every form a transport delivers a PEM in comes out as the same PEM bytes."""

from __future__ import annotations

import base64
import os
import textwrap
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.intake import passphrase, pem_bytes, read_secret
from tests.material import ClusterMaterial

NAME = "DASK_CLUSTER_CERT"


def forms(pem: str) -> dict[str, str]:
    """What users' transports turn a PEM into."""
    one_line_b64 = base64.b64encode(pem.encode()).decode()
    return {
        "raw": pem,
        "literal-backslash-n": pem.replace("\n", "\\n"),
        "base64-one-line": one_line_b64,
        "base64-wrapped": "\n".join(textwrap.wrap(one_line_b64, 76)),
        "crlf": pem.replace("\n", "\r\n"),
        "double-quoted": f'"{pem}"',
        "single-quoted-literal-n": "'" + pem.replace("\n", "\\n") + "'",
        "blanks-around": f"  \n\t{pem}\n\n  ",
        "indented": "\n".join("    " + line for line in pem.splitlines()),
    }


@pytest.mark.parametrize("form", list(forms("x")))
def test_every_form_gives_the_same_pem(material: ClusterMaterial, form: str) -> None:
    """Each transport's mangling is undone; the certificate comes out byte for byte."""
    pem = material.cluster.cert_pem.decode()
    assert pem_bytes(NAME, forms(pem)[form]) == pem.encode()


def test_file_variant_is_read(tmp_path: Path, material: ClusterMaterial) -> None:
    """X_FILE names a file (a Docker or Kubernetes secret) that holds the PEM."""
    secret = tmp_path / "cert"
    secret.write_bytes(material.cluster.cert_pem)
    text = read_secret({f"{NAME}_FILE": str(secret)}, NAME)
    assert text is not None and pem_bytes(NAME, text) == material.cluster.cert_pem


def test_a_secret_mounted_as_symlinks_is_read(tmp_path: Path, material: ClusterMaterial) -> None:
    """Kubernetes mounts a secret as tls.crt -> ..data/tls.crt, ..data -> ..<time>/: followed."""
    version = tmp_path / "..2026_11_28_05_00_00.000000001"
    version.mkdir()
    (version / "tls.crt").write_bytes(material.cluster.cert_pem)
    (tmp_path / "..data").symlink_to(version.name)
    (tmp_path / "tls.crt").symlink_to("..data/tls.crt")
    text = read_secret({f"{NAME}_FILE": str(tmp_path / "tls.crt")}, NAME)
    assert text is not None and pem_bytes(NAME, text) == material.cluster.cert_pem


def test_a_fifo_swapped_in_after_the_check_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file replaced by a FIFO between the check and the open: the open does not wait
    for a writer, and the FIFO is refused."""
    secret = tmp_path / "cert"
    secret.write_bytes(b"checked as a regular file")
    real_open = os.open

    def swap_then_open(path: str, flags: int, *args: int) -> int:
        if path == str(secret):
            assert flags & os.O_NONBLOCK, "a FIFO would be opened for a blocking read"
            secret.unlink()
            os.mkfifo(secret)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(ConfigError, match=f"{secret} is a FIFO, not a regular file"):
        read_secret({f"{NAME}_FILE": str(secret)}, NAME)


def test_passphrase_file_loses_its_trailing_newline(tmp_path: Path) -> None:
    """`echo pass > file` adds a newline that is not part of the passphrase; a variable is exact."""
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    var = "DASK_CLUSTER_KEY_PASSPHRASE"
    assert passphrase({f"{var}_FILE": str(secret)}, var) == b"s3cret"
    assert passphrase({var: " s3cret "}, var) == b" s3cret "
    assert passphrase({}, var) is None


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({NAME: "pem", f"{NAME}_FILE": "/f"}, "is set and so is DASK_CLUSTER_CERT_FILE"),
        ({f"{NAME}_FILE": "/no/such/file"}, "DASK_CLUSTER_CERT_FILE: cannot read /no/such/file"),
        ({f"{NAME}_FILE": "/"}, "DASK_CLUSTER_CERT_FILE: / is a directory, not a regular file"),
        ({NAME: ""}, "DASK_CLUSTER_CERT: is empty"),
    ],
)
def test_ambiguous_or_missing_sources_are_refused(environ: dict[str, str], says: str) -> None:
    """Both forms at once, an unreadable file, an empty value: refused, naming the variable."""
    with pytest.raises(ConfigError, match=says):
        read_secret(environ, NAME)


def test_unset_is_none() -> None:
    """Neither X nor X_FILE: None, for the caller to decide."""
    assert read_secret({}, NAME) is None

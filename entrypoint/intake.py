"""Secret intake: turn what a transport delivered into PEM bytes, forgiving where the intent is
clear (quotes, blanks, CRLF, literal \\n, single-line base64, a *_FILE), strict where it is not."""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from entrypoint.contract import file_var
from entrypoint.errors import ConfigError

MAX_SECRET_BYTES = 1 << 20  # a long chain is a few KiB; anything near this is not a PEM
PEM_MARK = "-----BEGIN "
QUOTES = ("'", '"')
FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


def read_secret(environ: Mapping[str, str], name: str) -> str | None:
    """The text of `name`, or of the file `name`_FILE names; None when neither is set."""
    file_variable = file_var(name)
    value, path = environ.get(name, ""), environ.get(file_variable, "").strip()
    if value.strip() and path:
        raise ConfigError(name, f"is set and so is {file_variable}", "set only one of the two")
    if path:
        return _read_file(file_variable, path)
    if name in environ and not value.strip():
        raise ConfigError(name, "is empty", f"pass a value, or unset it and set {file_variable}")
    if not value:
        return None
    try:
        data = value.encode("utf-8")  # os.environ keeps undecodable bytes as surrogates
    except UnicodeEncodeError:
        raise ConfigError(name, "is not UTF-8 text", "pass the PEM text or its base64") from None
    _check_size(name, len(data))
    return value


def _read_file(file_var: str, path: str) -> str:
    fix = "mount the file there (e.g. a Docker secret), readable by the container's user"
    try:
        data = _read_regular_file(file_var, path)
    except OSError as error:
        raise ConfigError(file_var, f"cannot read {path}: {error.strerror}", fix) from None
    if not data.strip():
        raise ConfigError(file_var, f"{path} is empty", "point it at the file that holds the value")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(file_var, f"{path} is not UTF-8 text", "point it at a PEM file") from None


def _read_regular_file(file_var: str, path: str) -> bytes:
    """The file's bytes, never blocking: a FIFO, socket or device is refused before it is opened
    (stat follows symlinks, so secrets mounted as symlinks work), and opened non-blocking and
    checked again in case one was swapped in between."""
    _require_regular(file_var, path, Path(path).stat())
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        _require_regular(file_var, path, os.fstat(fd))
        data = file.read(MAX_SECRET_BYTES + 1)
    _check_size(file_var, len(data))
    return data


def _require_regular(file_var: str, path: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = FILE_KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
        raise ConfigError(
            file_var,
            f"{path} is {kind}, not a regular file",
            "point it at a file holding the value",
        )


def _check_size(name: str, size: int) -> None:
    if size > MAX_SECRET_BYTES:
        raise ConfigError(
            name,
            f"is over {MAX_SECRET_BYTES >> 10} KiB, too large for a PEM",
            "check what is passed",
        )


def pem_bytes(name: str, text: str) -> bytes:
    """PEM bytes from raw PEM, PEM with literal \\n, or single-line base64 of a PEM; CRLF, blanks
    and surrounding quotes removed."""
    text = _unwrap(text)
    if PEM_MARK not in text:
        text = _unwrap(_from_base64(name, text))
    if "\\n" in text:
        text = text.replace("\\r\\n", "\n").replace("\\n", "\n")
    # blank lines stay: a legacy encrypted key needs the one after its headers
    return ("\n".join(line.strip() for line in text.splitlines()) + "\n").encode()


def _unwrap(text: str) -> str:
    text = text.strip().replace("\r\n", "\n").replace("\r", "\n")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in QUOTES:
        text = text[1:-1].strip()
    return text


def _from_base64(name: str, text: str) -> str:
    fix = "pass the PEM text, or its single-line base64 (base64 -w0 file.pem)"
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ConfigError(name, "is neither PEM text nor base64 of a PEM", fix) from None
    if PEM_MARK not in decoded:
        raise ConfigError(name, "is base64, but not of a PEM", fix)
    return decoded


def passphrase(environ: Mapping[str, str], name: str) -> bytes | None:
    """The key's passphrase, if any; a file's one trailing newline is not part of it."""
    text = read_secret(environ, name)
    if text is None:
        return None
    from_file = bool(environ.get(file_var(name), "").strip())
    return (text.removesuffix("\n").removesuffix("\r") if from_file else text).encode()

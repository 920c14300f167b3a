"""The state directory and its access file: how clients and workers find the server and prove who they are.

The login node is shared, so the state directory is private (0700) and `access.toml` (0600) holds the bearer token
that every RPC must carry, and the server's TLS certificate, which clients pin: they trust that certificate and no
other, so the token only ever crosses the network encrypted, to the server that wrote the file. Both are made once
and kept across restarts so that running workers reconnect. A server started with `--insecure` writes `tls = false`
instead of a certificate, and clients then speak plaintext: only because the file says so by name.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomli

ACCESS_FILE = "access.toml"
TOKEN_BYTES = 32
CERTIFICATE_NAME = "tqhpc-server"
"""The one name in the server's certificate, which clients check in place of the host name they dialled."""
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----\s*")


class AccessError(RuntimeError):
    """The access file is missing, unreadable, malformed or open to others, or the state directory is not private;
    the message says which file and what to do."""


class AccessExposed(AccessError):
    """The access file is open to others: its token may have been copied."""

    @classmethod
    def of(cls, path: Path, mode: int) -> AccessExposed:
        return cls(
            f"the access file {path} is open to others (mode {mode:04o}): anyone could copy its token; "
            f"run `chmod 600 {path}` (or delete it and restart `tqhpc server` for a new token)"
        )


def default_state_dir() -> Path:
    """`$TQHPC_HOME`, else `~/.local/share/tqhpc` (DESIGN.md)."""
    home = os.environ.get("TQHPC_HOME")
    return Path(home).expanduser() if home else Path.home() / ".local" / "share" / "tqhpc"


def prepare_state_dir(state_dir: Path) -> Path:
    """Create the state directory private to its owner; close one that others can only read, and refuse one that
    others can write or that belongs to someone else: they could have replaced its access file, certificate or
    database, so nothing in it can be trusted until its owner has looked. An access file open to others is refused
    as clients refuse it."""
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = state_dir.stat()
    mode = info.st_mode & 0o777
    if info.st_uid != os.getuid():
        raise AccessError(
            f"the state directory {state_dir} belongs to user id {info.st_uid}, not to you: "
            "use a state directory of your own (--state-dir or $TQHPC_HOME)"
        )
    if mode & 0o022:
        raise AccessError(
            f"the state directory {state_dir} is writable by others (mode {mode:04o}): they could replace its "
            f"access file or database; check its files, then run `chmod 700 {state_dir}`"
        )
    if mode & 0o077:
        os.chmod(state_dir, mode & 0o700)
    access = state_dir / ACCESS_FILE
    if access.exists() and access.stat().st_mode & 0o077:  # the server would go on with a token others may hold
        raise AccessExposed.of(access, access.stat().st_mode & 0o777)
    return state_dir


@dataclass(frozen=True)
class Access:
    """Where the server is and how to talk to it.

    `certificate` is the server's own certificate (PEM), the only one a client trusts; None means plaintext, for a
    server started with `--insecure`. It has no default: every maker of an Access says which it is.
    """

    address: str
    token: str
    certificate: str | None

    @property
    def tls(self) -> bool:
        return self.certificate is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"bearer {self.token}"),)


def write_private_file(path: Path, text: str) -> None:
    """Write `path` atomically with mode 0600, so no reader ever sees it half-written or readable by others."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)  # mkstemp creates the file 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_access(state_dir: Path, access: Access) -> Path:
    """Write access.toml atomically with mode 0600, so no reader ever sees a half-written or readable token."""
    path = state_dir / ACCESS_FILE
    if access.certificate is not None:
        transport = (
            "# The server's own TLS certificate: clients trust it and no other.\n"
            "tls = true\n"
            f'certificate = """\n{access.certificate.strip()}\n"""\n'
        )
    else:
        transport = "# Started with --insecure: calls, the token too, cross the network in clear.\ntls = false\n"
    write_private_file(
        path,
        "# Written by `tqhpc server`; keep it private: the token lets anyone submit as you.\n"
        f'address = "{access.address}"\n'
        f'token = "{access.token}"\n' + transport,
    )
    return path


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def read_access(path: Path) -> Access:
    """The address, token and certificate in `path`, refused if others may read or change it: the token lets anyone
    who copies it submit as you, so a leaked one must be noticed, not used."""
    address, token, data = _read_address_and_token(path)
    return Access(address=address, token=token, certificate=_pinned_certificate(path, data))


def read_address_and_token(path: Path) -> tuple[str, str]:
    """What a restarting server keeps from its last access.toml, whichever server wrote it (one from before TLS
    too): the token and port that running workers know."""
    address, token, _ = _read_address_and_token(path)
    return address, token


def _read_address_and_token(path: Path) -> tuple[str, str, dict[str, object]]:
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise AccessExposed.of(path, mode)
            data = tomli.loads(handle.read().decode())
    except FileNotFoundError:
        raise AccessError(
            f"no access file at {path}: start `tqhpc server` first, or point --access / $TQHPC_ACCESS at its "
            "state directory's access.toml"
        ) from None
    except PermissionError:
        raise AccessError(f"cannot read the access file {path}: permission denied") from None
    except OSError as err:  # a path through a file, a device that fails: never a traceback
        raise AccessError(f"cannot read the access file {path}: {err.strerror or err}") from None
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as err:
        raise AccessError(f"the access file {path} is not valid TOML: {err}") from None
    address, token = data.get("address"), data.get("token")
    if not isinstance(address, str) or not address or not isinstance(token, str) or not token:
        raise AccessError(f"the access file {path} lacks an address or a token")
    return address, token, data


def _pinned_certificate(path: Path, data: dict[str, object]) -> str | None:
    """The certificate to pin, or None where the file says `tls = false`: plaintext only when named."""
    tls, certificate = data.get("tls"), data.get("certificate")
    if tls is None and certificate is None:
        raise AccessError(
            f"the access file {path} has no TLS certificate: it was written by an older tqhpc server; restart "
            "`tqhpc server` to write a new one (a server started with --insecure writes `tls = false`)"
        )
    if tls is not None and not isinstance(tls, bool):
        raise AccessError(f"the access file {path} says tls = {tls!r}: it must be true or false")
    if tls is False:
        if certificate is not None:
            raise AccessError(f"the access file {path} says tls = false but holds a certificate: which is it?")
        return None
    if not isinstance(certificate, str) or not _is_pem_certificate(certificate):
        raise AccessError(
            f"the access file {path} lacks the server's certificate, or it is damaged: copy access.toml again from "
            "the server's state directory"
        )
    return certificate.strip() + "\n"


def _is_pem_certificate(text: str) -> bool:
    """One PEM certificate whose DER is whole: a cheap check (no X.509 parser on every client start) that catches
    a cut or edited block; a certificate altered inside stays one that no server presents, and the handshake says so."""
    match = _PEM_CERTIFICATE.fullmatch(text.strip() + "\n")
    if not match:
        return False
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(der) < 4 or der[0] != 0x30 or der[1] != 0x82:  # SEQUENCE with a two-byte length, as any real certificate
        return False
    return len(der) == 4 + int.from_bytes(der[2:4], "big")


def find_access_file(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--access`, else `$TQHPC_ACCESS`, else the default state directory's access.toml (DESIGN.md).

    The flag and the variable take the same things: the file itself, or the state directory that holds it.
    """
    named = explicit or os.environ.get("TQHPC_ACCESS")
    if named:
        path = Path(named).expanduser()
        return path / ACCESS_FILE if path.is_dir() else path
    return default_state_dir() / ACCESS_FILE


def load_access(explicit: str | os.PathLike[str] | None = None) -> Access:
    return read_access(find_access_file(explicit))

"""The state directory and its access file: how clients and workers find the server and prove who they are.

The login node is shared, so the state directory is private (0700) and `access.toml` (0600) holds the bearer token
that every RPC must carry. The token is made once and kept across restarts so that running workers reconnect.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomli

ACCESS_FILE = "access.toml"
TOKEN_BYTES = 32


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
    address: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"bearer {self.token}"),)


def write_access(state_dir: Path, access: Access) -> Path:
    """Write access.toml atomically with mode 0600, so no reader ever sees a half-written or readable token."""
    path = state_dir / ACCESS_FILE
    fd, tmp = tempfile.mkstemp(prefix=".access-", dir=state_dir)  # mkstemp creates the file 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(
                "# Written by `tqhpc server`; keep it private: the token lets anyone submit as you.\n"
                f'address = "{access.address}"\n'
                f'token = "{access.token}"\n'
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def read_access(path: Path) -> Access:
    """The address and token in `path`, refused if others may read or change it: the token lets anyone who copies it
    submit as you, so a leaked one must be noticed, not used."""
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
    return Access(address=address, token=token)


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

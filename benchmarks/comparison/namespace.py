"""A network namespace with loopback alone, for peers whose servers listen on every interface.

HyperQueue's server binds all interfaces; on a shared machine the benchmark must not open it to the network. As
root, compare.py re-executes itself under `unshare --net` with only `lo`, brought up, so every peer (tqhpc too)
runs in the same namespace and the comparison stays fair.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import NoReturn

MARK = "--in-namespace"


def loopback_only() -> bool:
    """True when this process's network namespace has no interface but `lo`, and `lo` works."""
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        return False
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            socket.create_connection(server.getsockname(), timeout=2).close()
    except OSError:
        return False
    return True


def why_not_reexec() -> str:
    """Why this process cannot move itself into a loopback-only namespace ("" when it can)."""
    if os.geteuid() != 0:
        return "it is not running as root (unshare --net needs CAP_SYS_ADMIN)"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH"
    return ""


def reexec_isolated(script: Path, argv: list[str]) -> NoReturn:
    """Run this script again, with the same arguments, in a new network namespace with loopback up."""
    os.execvp(
        "unshare",
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
         sys.executable, str(script), MARK, *argv],
    )  # fmt: skip

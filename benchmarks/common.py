"""What the benchmarks share: a real tqhpc server, started as users start it, in a state directory of their own."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def tqhpc(*args: str) -> list[str]:
    """The command line of this checkout's tqhpc, whatever is on PATH."""
    return [sys.executable, "-m", "tqhpc", *args]


@contextmanager
def running_server(
    state: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A server on loopback; yields the process (for its CPU time) and its access file, and stops it on exit."""
    server = subprocess.Popen(
        tqhpc("server", "--state-dir", str(state), "--listen", "127.0.0.1:0", *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        access = state / "access.toml"
        deadline = time.monotonic() + 30
        while not access.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        yield server, access
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

"""What the benchmarks share: a real tqhpc server, started as users start it, in a state directory of their own,
and real `tqhpc worker` processes beside it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


def tqhpc(*args: str, python: str = sys.executable) -> list[str]:
    """The command line of this checkout's tqhpc, whatever is on PATH (or of the checkout `python` belongs to).
    `-P`: a tqhpc/ in the working directory (another checkout's) must not stand in for the interpreter's own."""
    return [python, "-P", "-m", "tqhpc", *args]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if it has not left within `timeout` seconds: a benchmark leaves nothing running."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process itself (threads included; its children's time is not)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@contextmanager
def running_server(
    state: Path, *extra: str, env: dict[str, str] | None = None, python: str = sys.executable
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A server on loopback; yields the process (for its CPU time) and its access file, and stops it on exit.
    `python` may be another checkout's interpreter, to measure that checkout's server."""
    server = subprocess.Popen(
        tqhpc("server", "--state-dir", str(state), "--listen", "127.0.0.1:0", *extra, python=python),
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
        if python != sys.executable:
            _name_plaintext_of_an_older_server(access)
        yield server, access
    finally:
        stop_process(server)


def _name_plaintext_of_an_older_server(access: Path) -> None:
    """A server of a checkout from before TLS serves plaintext without its access.toml saying so, and this
    checkout's clients refuse such a file: say it for them, as that server's `--insecure` would."""
    text = access.read_text()
    if not any(line.startswith("tls =") for line in text.splitlines()):
        with access.open("a") as handle:
            handle.write("tls = false\n")


@contextmanager
def running_worker(access: Path, scratch: Path, *options: str, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A `tqhpc worker` process with these options, its output in `log` (or dropped); stopped on exit."""
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        worker = subprocess.Popen(
            tqhpc("worker", "--access", str(access), "--scratch-dir", str(scratch), *options),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield worker
        finally:
            stop_process(worker)

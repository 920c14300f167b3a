"""Fixtures that start the real thing: a `tqhpc server` process on loopback and real `tqhpc worker` processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest

from tqhpc import Client
from tqhpc._proto import rpc
from tqhpc.access import Access, read_access
from tqhpc.channel import open_channel, sync_stub

STARTUP_SECONDS = 20.0


def wait_until(
    predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll until predicate() is truthy; fail the test with `what` if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {(what() if callable(what) else what) or predicate}")
        time.sleep(interval)


def tqhpc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tqhpc", *args]


@dataclass
class ServerProcess:
    state_dir: Path
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def access_file(self) -> Path:
        return self.state_dir / "access.toml"

    @property
    def access(self) -> Access:
        return read_access(self.access_file)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def start_server(state_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    output = state_dir.parent / f"{state_dir.name}-server.out"
    handle = open(output, "ab")  # noqa: SIM115 - the child keeps it
    access = state_dir / "access.toml"
    before = access.stat().st_mtime_ns if access.exists() else None
    process = subprocess.Popen(
        tqhpc_command("server", "--state-dir", str(state_dir), "--listen", "127.0.0.1:0", *extra),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = ServerProcess(state_dir, process, output)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}: {server.log()}")
        return access.exists() and access.stat().st_mtime_ns != before and b"listening" in output.read_bytes()

    wait_until(ready, STARTUP_SECONDS, what="the server to start")
    return server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path / "state", "--worker-timeout", "3", "--reap-interval", "0.5")
    yield proc
    if proc.process.poll() is None:
        proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.access_file) as c:
        yield c


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[rpc.TaskQueueStub]:
    """A raw stub that carries the token, for RPC-level tests."""
    channel, stub = sync_stub(server.access)
    yield stub
    channel.close()


@pytest.fixture
def bare_channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    """A channel without the token."""
    channel = open_channel(server.access)
    yield channel
    channel.close()


@dataclass
class Workers:
    server: ServerProcess
    tmp: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        index = len(self.started)
        output = self.tmp / f"worker-{index}.out"
        process = subprocess.Popen(
            tqhpc_command(
                "worker",
                "--access",
                str(self.server.access_file),
                "--ping-interval",
                "0.2",
                "--scratch-dir",
                str(self.tmp / "scratch"),
                *args,
            ),
            stdout=open(output, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=env,
        )
        process.output = output  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        running = [p for p in self.started if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGINT)
        time.sleep(0.1)  # two signals sent at once would be delivered as one
        for process in running:
            process.send_signal(signal.SIGINT)  # a second signal skips the grace period
        for process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(server: ServerProcess, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(server, tmp_path)
    yield pool
    pool.stop_all()


def output_of(process: subprocess.Popen[bytes]) -> str:
    return process.output.read_text(errors="replace")  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the developer's own ~/.local/share/tqhpc and config, and out of the checkout: tasks
    run in the directory they are submitted from, which is the test's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TQHPC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TQHPC_ACCESS", raising=False)
    monkeypatch.delenv("TQHPC_CONFIG", raising=False)
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def orphans() -> Iterator[list[psutil.Process]]:
    """Processes to kill at the end of the test, whatever happened: a SIGKILLed worker's tasks outlive it."""
    found: list[psutil.Process] = []
    yield found
    for process in found:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


SMALL_DISK_SIZE = "40m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs of the test's own, unmounted afterwards: the server's state directory itself, so that what the
    server prints (kept next to it) is not on it."""
    mount_point = tmp_path / "disk" / "state"
    mount_point.mkdir(parents=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(disk: Path, leave: int) -> Path:
    """Write a filler file until only about `leave` bytes of `disk` are free; return it (deleting it frees space)."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb", buffering=0) as handle:
        block = b"\0" * (1 << 20)
        while free - handle.tell() > leave + len(block):
            handle.write(block)
        if leave == 0:  # to the last byte
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 4096)
    return filler

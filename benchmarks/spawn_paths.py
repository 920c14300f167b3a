#!/usr/bin/env python3
"""What starting a task costs a worker on this machine, by spawn path: `sh -c true` with its stdout and stderr
read through pipes, in its own session and working directory, 2 at a time, inside one asyncio loop as the worker
runs them. The parent's own CPU time (the children's aside) is what a worker pays per task for the path.

Paths:
- popen-thread: `subprocess.Popen` and a thread blocked in `waitid` per task, then `wait4` (the worker today);
- asyncio: `asyncio.create_subprocess_exec` with the loop's default child watcher (on Python 3.11 a thread per
  child as well);
- asyncio-pidfd: the same with `asyncio.PidfdChildWatcher` (no thread: the loop watches a pidfd);
- popen-pidfd: `subprocess.Popen` (vfork+exec in CPython's `_posixsubprocess`, close_fds) and a pidfd in the loop,
  reaped with `wait4`: no thread, and `cwd` without touching the parent's directory;
- posix-spawn-pidfd: `os.posix_spawn` (vfork+exec in glibc) and a pidfd in the loop, reaped with `wait4`;
- posix-spawn-sigchld: `os.posix_spawn` and one SIGCHLD handler that reaps every exited child with `wait4`;
- threads-run, the floor: `subprocess.run(capture_output=True)` in 2 threads, no event loop at all.
`os.posix_spawn` has no working-directory argument in Python, so those two change the parent's directory around
the call (the worker runs everything on one thread, so nothing else sees it).

    .venv/bin/python benchmarks/spawn_paths.py [--tasks 2000] [--concurrency 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ARGV = ["/bin/sh", "-c", "true"]
Spawn = Callable[[Path], Awaitable[int]]


async def _drain(fd: int) -> None:
    """Read a pipe to its end through the loop, as the worker reads a task's output."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb"))
    try:
        while await reader.read(65536):
            pass
    finally:
        transport.close()


async def popen_thread(workdir: Path) -> int:
    loop = asyncio.get_running_loop()
    process = subprocess.Popen(ARGV, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    exited = asyncio.Event()

    def wait() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        loop.call_soon_threadsafe(exited.set)

    threading.Thread(target=wait, daemon=True).start()
    assert process.stdout is not None and process.stderr is not None
    pumps = asyncio.gather(_drain(os.dup(process.stdout.fileno())), _drain(os.dup(process.stderr.fileno())))
    process.stdout.close()
    process.stderr.close()
    await exited.wait()
    _, status, _ = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    await pumps
    return process.returncode


async def popen_pidfd(workdir: Path) -> int:
    loop = asyncio.get_running_loop()
    process = subprocess.Popen(ARGV, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    pidfd = os.pidfd_open(process.pid)
    exited = asyncio.Event()
    loop.add_reader(pidfd, exited.set)
    assert process.stdout is not None and process.stderr is not None
    pumps = asyncio.gather(_drain(os.dup(process.stdout.fileno())), _drain(os.dup(process.stderr.fileno())))
    process.stdout.close()
    process.stderr.close()
    try:
        await exited.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    _, status, _ = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    await pumps
    return process.returncode


async def asyncio_exec(workdir: Path) -> int:
    process = await asyncio.create_subprocess_exec(*ARGV, cwd=workdir, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   start_new_session=True)  # fmt: skip
    await process.communicate()
    return process.returncode if process.returncode is not None else -1


def _posix_spawn(workdir: Path) -> tuple[int, int, int]:
    """Start the task with posix_spawn: (pid, read end of stdout, read end of stderr)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    here = os.getcwd()
    os.chdir(workdir)
    try:
        pid = os.posix_spawn(ARGV[0], ARGV, os.environ, file_actions=actions, setsid=True)
    finally:
        os.chdir(here)
        os.close(out_w)
        os.close(err_w)
    return pid, out_r, err_r


async def posix_spawn_pidfd(workdir: Path) -> int:
    loop = asyncio.get_running_loop()
    pid, out_r, err_r = _posix_spawn(workdir)
    pidfd = os.pidfd_open(pid)
    exited = asyncio.Event()
    loop.add_reader(pidfd, exited.set)
    try:
        await asyncio.gather(_drain(out_r), _drain(err_r), exited.wait())
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    _, status, _ = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status)


class SigchldReaper:
    """One SIGCHLD handler for all tasks: on each signal, reap every child that has exited."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[int]] = {}

    def install(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, self.reap)

    def remove(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGCHLD)

    def reap(self) -> None:
        for pid, future in list(self.waiting.items()):
            try:
                done, status, _ = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 255 << 8
            if done:
                del self.waiting[pid]
                future.set_result(os.waitstatus_to_exitcode(status))

    async def run(self, workdir: Path) -> int:
        pid, out_r, err_r = _posix_spawn(workdir)
        future = asyncio.get_running_loop().create_future()
        self.waiting[pid] = future
        self.reap()  # it may have exited before it was registered
        code, *_ = await asyncio.gather(future, _drain(out_r), _drain(err_r))
        return code


async def _pool(spawn: Spawn, tasks: int, concurrency: int, root: Path) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> int:
        async with gate:
            workdir = root / f"task-{index}"
            workdir.mkdir()
            return await spawn(workdir)

    codes = await asyncio.gather(*(one(i) for i in range(tasks)))
    if any(codes):
        raise SystemExit(f"{sum(1 for c in codes if c)} tasks failed")


def threads_run(tasks: int, concurrency: int, root: Path) -> None:
    def one(index: int) -> int:
        workdir = root / f"task-{index}"
        workdir.mkdir()
        return subprocess.run(ARGV, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True,
                              start_new_session=True, check=False).returncode  # fmt: skip

    with ThreadPoolExecutor(concurrency) as pool:
        failed = sum(1 for code in pool.map(one, range(tasks)) if code)
    if failed:
        raise SystemExit(f"{failed} tasks failed")


def measure(name: str, tasks: int, concurrency: int) -> tuple[float, float]:
    """(tasks per second, the parent's CPU milliseconds per task) for one path, in a fresh loop."""

    async def run(root: Path) -> None:
        if name == "asyncio-pidfd":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                watcher = asyncio.PidfdChildWatcher()
                asyncio.set_child_watcher(watcher)
                watcher.attach_loop(asyncio.get_running_loop())
        reaper = SigchldReaper()
        spawn: Spawn = {
            "popen-thread": popen_thread,
            "popen-pidfd": popen_pidfd,
            "asyncio": asyncio_exec,
            "asyncio-pidfd": asyncio_exec,
            "posix-spawn-pidfd": posix_spawn_pidfd,
            "posix-spawn-sigchld": reaper.run,
        }[name]
        if name == "posix-spawn-sigchld":
            reaper.install()
        try:
            await _pool(spawn, tasks, concurrency, root)
        finally:
            if name == "posix-spawn-sigchld":
                reaper.remove()
            if name == "asyncio-pidfd":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    asyncio.set_child_watcher(None)

    with tempfile.TemporaryDirectory(prefix="tqhpc-spawn-") as tmp:
        cpu = time.process_time()
        start = time.perf_counter()
        if name == "threads-run":
            threads_run(tasks, concurrency, Path(tmp))
        else:
            asyncio.run(run(Path(tmp)))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return tasks / seconds, 1000 * cpu / tasks


PATHS = (
    "popen-thread",
    "popen-pidfd",
    "asyncio",
    "asyncio-pidfd",
    "posix-spawn-pidfd",
    "posix-spawn-sigchld",
    "threads-run",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every path, interleaved; the best is shown")
    args = parser.parse_args()
    if min(args.tasks, args.concurrency, args.rounds) < 1:
        parser.error("--tasks, --concurrency and --rounds must be 1 or more")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for name in PATHS:
            rate, cpu = measure(name, args.tasks, args.concurrency)
            if name not in best or rate > best[name][0]:
                best[name] = (rate, cpu)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; {args.tasks} x `sh -c true`, "
          f"{args.concurrency} at a time, pipes read, best of {args.rounds} rounds")  # fmt: skip
    print(f"{'path':<22}{'tasks/s':>10}{'parent CPU ms/task':>20}")
    for name in PATHS:
        rate, cpu = best[name]
        print(f"{name:<22}{rate:>10,.0f}{cpu:>20.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

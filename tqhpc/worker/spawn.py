"""Starting a task's process the cheapest way measured here (benchmarks/spawn_paths.py): `os.posix_spawn`, which is
vfork+exec in glibc, with the task's stdout and stderr as non-blocking pipes for the event loop.

`subprocess.Popen` costs a third more of the worker's CPU for each task, and a worker running thousands of short
tasks pays that on every one. Python's `posix_spawn` has no working-directory argument, so the worker's own
directory is changed around the call and changed back at once. The worker runs its tasks from one thread, and its
other threads (directory checks, scratch directories, samples of /proc) use absolute paths only, so nothing sees
the change. A task gets stdin, stdout and stderr only, as with Popen's `close_fds`. Tasks that run a container
still go through Popen (see TaskProcess): apptainer's start costs far more than the spawn, and image pulls may run
beside it with paths relative to the worker's directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Spawned:
    """A started task: its pid (the leader of a new session) and the read ends of its output pipes."""

    pid: int
    stdout: int
    stderr: int


def spawn(argv: list[str], workdir: Path, env: dict[str, str]) -> Spawned:
    """Start `argv` (its first word a path: no PATH search) in `workdir`, in a new session, stdin from /dev/null.
    OSError as Popen raises it: a directory that cannot be entered is named in `filename`."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    try:
        _seal_inheritable()
        home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(workdir)
            try:
                pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
            finally:
                os.fchdir(home)
        finally:
            os.close(home)
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return Spawned(pid, out_r, err_r)


CLOSE_RANGE_CLOEXEC = 4  # linux/close_range.h


def _close_range_cloexec() -> Callable[[], None] | None:
    """Linux's close_range(3, ~0, CLOSE_RANGE_CLOEXEC) through glibc (2.34+, kernel 5.11+): one system call that
    marks every descriptor above stderr close-on-exec; None where libc lacks it."""
    try:
        close_range = ctypes.CDLL(None, use_errno=True).close_range
    except (AttributeError, OSError):
        return None
    close_range.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    close_range.restype = ctypes.c_int
    if close_range(3, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC) != 0:  # libc has it, the kernel does not (ENOSYS)
        return None

    def seal() -> None:
        close_range(3, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC)

    return seal


def _seal_by_listing() -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the descriptor of the listing itself is gone by now
                os.set_inheritable(fd, False)


_seal_inheritable: Callable[[], None] = _close_range_cloexec() or _seal_by_listing
"""Keep every descriptor but the three streams out of a task, before each spawn.

posix_spawn passes on every descriptor not marked close-on-exec, where Popen closes them all. Python, grpc and psutil
open theirs close-on-exec, but not the descriptors the worker was started with (from its shell, its batch script, a
test runner), nor those a C library opens later without the flag; a pipe among them held open by a long task would
keep its reader waiting. Done at every spawn, since such a descriptor may appear at any time."""


__all__ = ["Spawned", "spawn"]

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
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Spawned:
    """A started task: its pid (the leader of a new session) and the read ends of its output pipes."""

    pid: int
    stdout: int
    stderr: int


_sealed = False  # the descriptors the worker inherited are closed on exec (see _seal_inherited)


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
        if not _sealed:
            _seal_inherited()
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


def _seal_inherited() -> None:
    global _sealed
    """Keep descriptors the worker inherited (from its shell, its batch script, a test runner) out of its tasks.

    posix_spawn passes on every descriptor not marked close-on-exec, where Popen closes them all. Python, grpc and
    psutil open theirs close-on-exec; only those the worker was started with may be open to inheritance, and a
    pipe among them held open by a long task would keep its reader waiting. They are sealed once, at the first
    spawn."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the descriptor of the listing itself is gone by now
                os.set_inheritable(fd, False)
    _sealed = True


__all__ = ["Spawned", "spawn"]

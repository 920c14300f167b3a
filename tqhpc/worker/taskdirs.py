"""Where tasks run on a worker's node: the directory they were submitted from, or a scratch directory of their own.

A task that names a directory (every tqhpc client sends the one it was submitted from) runs there, as under Slurm.
That directory is the user's: the worker checks that it can enter it and never creates, changes or removes it.

A task that names none (one from a seed client) runs in a scratch directory unique to this worker's registration
and to the attempt: `<scratch>/tqhpc-<uid>/worker-<ID>.<PID>.<random>/task-<TASK>.<ATTEMPT>`. Worker and task ids
start again at 1 with every new server, and pids come back, so only the random part makes a registration's
directory its own; the attempt number keeps a re-run from finding the files of the run before. An attempt's
directory is removed when the attempt ends (its output has been read by then), and the registration's directory
when the worker leaves or registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("tqhpc.worker.taskdirs")


def directory_problem(path: str) -> str:
    """Why a task cannot run in `path` on this node, or "" when it can. Blocking (a stat on a shared file system
    may hang): call it in a thread."""
    where = f"on {socket.gethostname()}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as err:
        problem = f"cannot be reached ({err.strerror})"
    else:
        if not stat.S_ISDIR(mode):
            problem = "is not a directory"
        elif not os.access(path, os.X_OK):
            problem = "cannot be entered (permission denied)"
        else:
            return ""
    return (
        f"the task's working directory {path} {problem} {where}; a task runs where it was submitted (or in its "
        "--cwd), which must be visible to the workers"
    )


class DirectoryChecks:
    """`directory_problem` for many tasks in the same few directories: a directory found usable is trusted for a
    moment, so a stream of short tasks costs one check (and one thread) per moment, not one per task. A directory
    that goes away meanwhile still fails the task as `cwd`: the process then cannot enter it (TaskProcess)."""

    TRUST_SECONDS = 2.0

    def __init__(self) -> None:
        self._usable: dict[str, float] = {}  # path -> when it was last found usable (monotonic)

    async def problem(self, path: str) -> str:
        now = time.monotonic()
        if now - self._usable.get(path, -self.TRUST_SECONDS) < self.TRUST_SECONDS:
            return ""
        problem = await asyncio.to_thread(directory_problem, path)
        if problem:
            self._usable.pop(path, None)
        else:
            if len(self._usable) > 1024:
                self._usable.clear()
            self._usable[path] = time.monotonic()
        return problem


class ScratchSpace:
    """The scratch directories of one worker process: one per registration, one per attempt inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        """`<scratch>/tqhpc-<uid>`, shared by this user's workers on the node (and their image cache)."""
        self.current: Path | None = None
        """This registration's directory; made when its first task needs it."""
        self.made: set[Path] = set()
        """The attempt directories made and not yet removed: the only ones `remove` will touch."""

    def register(self, worker_id: int) -> None:
        """A new registration: a fresh directory (the previous registration's, if any, is removed)."""
        self.remove_all()
        self.current = self.root / f"worker-{worker_id}.{os.getpid()}.{secrets.token_hex(4)}"

    def attempt(self, task_id: int, attempt: int) -> Path:
        """Make the directory of one attempt of a task (raises OSError when it cannot be made)."""
        if self.current is None:
            raise RuntimeError("the worker has no scratch directory before it registers")
        self.current.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.current / f"task-{task_id}.{attempt}"
        try:
            path.mkdir()
        except FileExistsError:  # the same attempt handed to us twice: never share its files, take a new name
            path = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=self.current))
        self.made.add(path)
        return path

    async def remove(self, path: Path) -> None:
        """Remove an attempt's directory with all the task left there. Only directories `attempt` made are
        removed, so a task's own working directory can never be removed by mistake."""
        if path not in self.made:
            log.error("refusing to remove %s: it is not a scratch directory this worker made", path)
            return
        self.made.discard(path)
        await asyncio.to_thread(_remove_tree, path)

    def remove_all(self) -> None:
        """Remove this registration's directory (the worker leaves, or registers again)."""
        if self.current is not None:
            _remove_tree(self.current)
            self.current = None
        self.made.clear()


def _remove_tree(path: Path) -> None:
    """rmtree that also removes what a task made read-only or unreadable. Symbolic links are removed, never
    followed, so nothing outside `path` is touched."""

    def make_writable_and_retry(function: Callable[..., Any], name: str, *_: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)  # a read-only directory keeps its entries
            if function in (os.open, os.scandir) and not os.path.islink(name):  # a directory it cannot list
                os.chmod(name, stat.S_IRWXU)
                _remove_tree(Path(name))
            else:
                function(name)

    if not path.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)
    if path.exists():
        log.warning("could not remove all of the scratch directory %s", path)

"""One task as one process: `sh -c COMMAND` (or the apptainer command that runs it) in its own session and working
directory, output piped to the reporter, its process tree sampled for resource usage and held to its limits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from .._proto import pb
from ..config import WorkerSettings
from ..records import ResourceUsage
from .spawn import Spawned, spawn
from .taskdirs import directory_problem
from .usage import TreeSampler, own_high_water_mark

READ_SIZE = 64 * 1024
KILL_ESCALATION_SECONDS = 5.0
LIMIT_KILL_GRACE_SECONDS = 2.0
ORPHAN_GRACE_SECONDS = 2.0
FIRST_SAMPLE_SECONDS = 0.05
"""The first sample comes fast, so that `R` carries real figures and short tasks are seen at all."""

LOST_STATUS = 255 << 8
"""The wait status used when the root's real one could not be had (exit code 255)."""

OutputSink = Callable[[str, bytes], Awaitable[None]]
SampleSink = Callable[[ResourceUsage], Awaitable[None]]


class Failure:
    """Machine-readable reasons a task ended `F` (TaskStatusUpdate.failure)."""

    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    START = "start"  # the process could not be started at all
    CWD = "cwd"  # the task's working directory is missing or unusable on the worker's node
    NO_APPTAINER = "no_apptainer"
    IMAGE_MISSING = "image_missing"
    PULL_FAILED = "pull_failed"
    CONTAINER_START = "container_start"
    WORKER_ERROR = "worker_error"


@dataclass
class Outcome:
    exit_code: int | None
    """The shell's exit code; negative when a signal killed it; None when it never started."""
    error: str = ""
    """Why it never started or was stopped, for the task's stderr and its status reason."""
    failure: str = ""
    """One of `Failure`, empty when it succeeded."""
    usage: ResourceUsage | None = None


@dataclass(frozen=True)
class Limits:
    timeout: float = 0.0  # seconds of wall-clock time, 0: none
    memory: int = 0  # bytes of RSS over the whole tree, 0: none
    usage_interval: float = 1.0

    @classmethod
    def of(cls, task: pb.Task, settings: WorkerSettings) -> Limits:
        """The task's own limits, else the worker's defaults."""
        return cls(
            timeout=task.timeout or settings.default_timeout,
            memory=task.memory_limit or settings.default_memory_limit,
            usage_interval=settings.usage_interval,
        )


class TaskProcess:
    def __init__(
        self,
        command: str,
        workdir: Path,
        env: dict[str, str],
        sink: OutputSink,
        *,
        argv: list[str] | None = None,
        limits: Limits = Limits(),
        on_first_sample: SampleSink | None = None,
    ) -> None:
        self.command, self.workdir, self.env, self.sink = command, workdir, env, sink
        self.argv = argv or ["/bin/sh", "-c", command]
        self.bare = argv is None  # not the apptainer command of a container task
        self.limits = limits
        self.on_first_sample = on_first_sample
        self.pid: int | None = None
        self.sampler: TreeSampler | None = None
        self.stderr_tail = b""  # the last bytes of stderr, to recognise apptainer's own failures
        self._exited = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._stop_reason: tuple[str, str] | None = None  # (failure, message) when we killed it for a limit

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        parent_peak = own_high_water_mark()
        try:
            started = self._start()
        except OSError as err:
            if str(err.filename) == str(self.workdir):  # the directory went away (or changed) since it was checked
                return Outcome(None, directory_problem(str(self.workdir)) or str(err), Failure.CWD)
            return Outcome(exit_code=None, error=f"cannot start the task: {err}", failure=Failure.START)
        self.pid = started.pid
        self.sampler = TreeSampler(started.pid)
        pidfd = self._watch_exit(loop)
        pumps = asyncio.gather(self._pump(started.stdout, "O"), self._pump(started.stderr, "E"))
        limits = self.limits
        deadline = time.monotonic() + limits.timeout if limits.timeout else None
        # No watcher task until the first sample is due: most short tasks have ended by then and never need one.
        first_look = min(FIRST_SAMPLE_SECONDS, limits.timeout) if limits.timeout else FIRST_SAMPLE_SECONDS
        start_watch = loop.call_later(first_look, self._start_watch, deadline)
        try:
            await self._exited.wait()
            if self.sampler.samples:
                # The root is a zombie now, its orphans may still run: one last look. A task too short to have
                # been sampled is skipped (a scan of /proc costs more than such a task): the root's rusage has it.
                self.sampler.sample()
            try:
                _, status, rusage = os.wait4(started.pid, 0)
            except ChildProcessError:  # reaped by someone else: the exit status is lost, the task still ended
                status, rusage = LOST_STATUS, None
        finally:
            start_watch.cancel()
            if self._watch_task is not None:
                self._watch_task.cancel()
            if pidfd is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        ended = time.time()
        if self._stop_reason:
            self._kill_tree(signal.SIGKILL)  # what ignored SIGTERM goes now, whether or not it holds our pipes
        exit_code = os.waitstatus_to_exitcode(status)
        try:
            await asyncio.wait_for(asyncio.shield(pumps), ORPHAN_GRACE_SECONDS)
        except TimeoutError:
            # The shell is gone but something it left in the background still holds the pipes: the task is over,
            # so its leftovers go too (as Slurm ends a step's processes), and what they wrote is still read.
            self._kill_tree(signal.SIGKILL)
            await pumps
        usage = self.sampler.usage(rusage=rusage, ended_at=ended, parent_peak=parent_peak)
        if self._stop_reason:
            failure, message = self._stop_reason
            return Outcome(exit_code=exit_code, error=message, failure=failure, usage=usage)
        return Outcome(exit_code=exit_code, usage=usage)

    def _start(self) -> Spawned:
        """A bare task starts through posix_spawn (see spawn.py); a container task through Popen."""
        if self.bare:
            return spawn(self.argv, self.workdir, self.env)
        process = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a kill reaches everything it started
        )
        assert process.stdout is not None and process.stderr is not None
        ends = [os.dup(process.stdout.fileno()), os.dup(process.stderr.fileno())]
        process.stdout.close()
        process.stderr.close()
        for fd in ends:
            os.set_blocking(fd, False)
        # Reaped by `run` (wait4), not by Popen: forget it, so that Popen never waits for it or warns.
        process.returncode = 0
        return Spawned(process.pid, *ends)

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> int | None:
        """Have `_exited` set when the root exits, without reaping it (`wait4` reads its rusage afterwards).

        A pidfd watched by the loop costs no thread; the pidfd (returned, for closing) is open before the root can
        be reaped by anyone, so it always refers to this process. Without pidfds (an old kernel, or a platform
        without `os.pidfd_open`) a thread waits instead, which costs a thread start and a cross-thread wake-up.
        """
        assert self.pid is not None
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            threading.Thread(target=self._wait_for_exit, args=(loop,), daemon=True).start()
            return None
        loop.add_reader(pidfd, self._exited.set)
        return pidfd

    def _wait_for_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Block (in a thread) until the root exits, without reaping it: its rusage is read by `wait4` afterwards."""
        assert self.pid is not None
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._exited.set)

    def _start_watch(self, deadline: float | None) -> None:
        """The first sample is due and the task still runs: from now on a task samples it and holds its limits."""
        if not self._exited.is_set():
            self._watch_task = asyncio.create_task(self._watch(deadline))

    async def _watch(self, deadline: float | None) -> None:
        """Sample the tree, send the first sample, and kill the tree when it goes over a limit (`deadline`: when
        its timeout runs out, on the monotonic clock). It starts when the first sample is due."""
        assert self.sampler is not None
        limits = self.limits
        first = True
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                await self._stop_for("timeout", f"the task ran over its timeout of {limits.timeout:g} s and was killed")
                return
            rss = await asyncio.to_thread(self.sampler.sample)
            if limits.memory and rss > limits.memory:
                await self._stop_for(
                    "memory",
                    f"the task used {_mib(rss)} of memory (RSS of its processes), over its limit of "
                    f"{_mib(limits.memory)}, and was killed",
                )
                return
            if first and self.on_first_sample is not None:
                first = False
                with contextlib.suppress(Exception):
                    await self.on_first_sample(self.sampler.usage())
            delay = limits.usage_interval or 1.0
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(delay)

    async def _stop_for(self, failure: str, message: str) -> None:
        self._stop_reason = (failure, message)
        await self.kill(grace=LIMIT_KILL_GRACE_SECONDS)

    async def _pump(self, fd: int, log_type: str) -> None:
        """Read one output pipe (non-blocking) to its end, through the loop: no transport or thread per task."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    await _readable(loop, fd)
                    continue
                if not data:
                    return
                if log_type == "E":
                    self.stderr_tail = (self.stderr_tail + data)[-8192:]
                await self.sink(log_type, data)
        finally:
            os.close(fd)

    async def kill(self, grace: float = KILL_ESCALATION_SECONDS) -> None:
        """SIGTERM the whole process tree (and its group), SIGKILL what lingers after `grace` seconds."""
        if self.pid is None or self._exited.is_set():
            return
        self._kill_tree(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), grace)
        # Children that left the group or the tree's root behind: kill them in any case.
        self._kill_tree(signal.SIGKILL)

    def _kill_tree(self, signum: int) -> None:
        """Signal the process group and every process ever seen in the tree: `setsid` escapes a group kill, and a
        reparented orphan escapes the tree, but neither escapes both."""
        if self.pid is None:
            return
        _signal_group(self.pid, signum)
        if self.sampler is not None:
            with contextlib.suppress(Exception):
                self.sampler.sample()  # catch what started since the last sample
            for process in self.sampler.alive():
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    process.send_signal(signum)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Until `fd` has data (or its end) to read."""
    ready = loop.create_future()
    loop.add_reader(fd, _settle, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


__all__ = ["Failure", "Limits", "Outcome", "TaskProcess"]

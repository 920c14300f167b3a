"""One task as one process: `sh -c COMMAND` in its own session and working directory, output piped to the shipper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

READ_SIZE = 64 * 1024
KILL_ESCALATION_SECONDS = 5.0
ORPHAN_GRACE_SECONDS = 2.0

OutputSink = Callable[[str, bytes], Awaitable[None]]


@dataclass
class Outcome:
    exit_code: int | None
    """The shell's exit code; negative when a signal killed it; None when it never started."""
    error: str = ""
    """Why it never started, for the task's stderr and its status reason."""


class TaskProcess:
    def __init__(self, command: str, workdir: Path, env: dict[str, str], sink: OutputSink) -> None:
        self.command, self.workdir, self.env, self.sink = command, workdir, env, sink
        self.process: asyncio.subprocess.Process | None = None

    async def run(self) -> Outcome:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                self.command,
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a kill reaches everything it started
            )
        except OSError as err:
            return Outcome(exit_code=None, error=f"cannot start the task: {err}")
        assert self.process.stdout is not None and self.process.stderr is not None
        pumps = asyncio.gather(self._pump(self.process.stdout, "O"), self._pump(self.process.stderr, "E"))
        exit_code = await self.process.wait()
        try:
            await asyncio.wait_for(asyncio.shield(pumps), ORPHAN_GRACE_SECONDS)
        except TimeoutError:
            # The shell is gone but something it left in the background still holds the pipes: the task is over,
            # so its leftovers go too (as Slurm ends a step's processes), and what they wrote is still read.
            _signal_group(self.process.pid, signal.SIGKILL)
            await pumps
        return Outcome(exit_code=exit_code)

    async def _pump(self, stream: asyncio.StreamReader, log_type: str) -> None:
        while data := await stream.read(READ_SIZE):
            await self.sink(log_type, data)

    async def kill(self) -> None:
        """SIGTERM the whole process group, SIGKILL it if it lingers."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), KILL_ESCALATION_SECONDS)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
        # Children that left the group's leader behind still hold the pipes: kill the group in any case.
        _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)

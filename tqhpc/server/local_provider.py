"""CreateWorker(provider="local"): worker processes on the server's own host, watched until they exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("tqhpc.server")

STOP_AFTER_DELETE_SECONDS = 10.0
"""A deleted worker leaves at its next ping; one still running after this long is sent SIGTERM, later SIGKILL."""


class LocalProvider:
    name = "local"

    def __init__(
        self,
        state_dir: Path,
        access_file: Path,
        ping_interval: float,
        on_exit: Callable[[int, int], Awaitable[None]],
    ) -> None:
        self.log_dir = state_dir / "workers"
        self.access_file = access_file
        self.ping_interval = ping_interval
        self.on_exit = on_exit
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def resolve(self, flavor: str, concurrency: int, prefetch: int | None) -> tuple[int, int]:
        """Local workers have no flavors: any value is accepted and ignored, and a prefetch left to the flavor is
        the worker's default of 1."""
        return concurrency, 1 if prefetch is None else prefetch

    async def start(self, worker_ids: list[int], concurrency: int, prefetch: int, flavor: str) -> None:
        self.log_dir.mkdir(mode=0o700, exist_ok=True)
        for worker_id in worker_ids:
            command = [
                sys.executable, "-m", "tqhpc", "worker",
                "--access", str(self.access_file),
                "--worker-id", str(worker_id),
                "--prefetch", str(prefetch),
                "--ping-interval", str(self.ping_interval),
            ]  # fmt: skip
            if concurrency:
                command += ["--concurrency", str(concurrency)]
            with open(self.log_dir / f"worker-{worker_id}.log", "ab") as output:
                process = await asyncio.create_subprocess_exec(
                    *command, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
                )
            self.processes[worker_id] = process
            watcher = asyncio.create_task(self._watch(worker_id, process))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
            log.info("started local worker %d as pid %d", worker_id, process.pid)

    async def _watch(self, worker_id: int, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self.processes.pop(worker_id, None)
        log.info("local worker %d exited with code %d", worker_id, code)
        await self.on_exit(worker_id, code)

    async def stop(self, worker_id: int) -> None:
        """The worker learns of its deletion at its next ping and leaves; make sure it does."""
        process = self.processes.get(worker_id)
        if process is not None:
            task = asyncio.create_task(self._ensure_stopped(process, STOP_AFTER_DELETE_SECONDS))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def close(self, grace: float) -> None:
        """Ask every local worker to drain (SIGTERM), wait up to `grace`, then kill what is left."""
        processes = list(self.processes.values())
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        await asyncio.gather(*(self._ensure_stopped(p, grace, already_asked=True) for p in processes))
        for task in list(self._watchers):
            task.cancel()

    @staticmethod
    async def _ensure_stopped(process: asyncio.subprocess.Process, wait: float, *, already_asked: bool = False) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), wait)
            return
        except TimeoutError:
            pass
        if not already_asked:
            _signal_group(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), wait)
                return
            except TimeoutError:
                pass
        _signal_group(process, signal.SIGKILL)
        await process.wait()


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)

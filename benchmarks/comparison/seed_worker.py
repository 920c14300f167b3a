#!/usr/bin/env python3
"""A worker that speaks only the seed's unary protocol, to measure what such a worker gets from a tqhpc server.

tqhpc keeps the seed's worker RPCs working beside its session stream, so a worker written against the seed alone
must not be slower than it was before the stream existed. This one does what such a worker reasonably does, with
nothing from tqhpc's own worker:

- RegisterWorker once, with its concurrency and prefetch;
- PingAndTakeNewTasks: at once whenever a task of its ends (it has room again), otherwise every ping interval; a
  task it holds or has run is ignored (the server lists assigned tasks again until they start, and a ping answered
  while a task ended may still list it);
- for each task, as soon as a slot is free: UpdateTaskStatus R, run `sh -c COMMAND` in its work directory, send the
  output with SendTaskLogs if there is any, then UpdateTaskStatus S (exit code 0) or F (with the exit code).

One ping is in flight at a time, and each status report is awaited before the next step of its task. It runs as a
process of its own beside the server, as a worker would (`--help`), and on SIGTERM or SIGINT it stops pinging,
lets the tasks it runs end, and prints one line: how many tasks it ran and how many reports the server refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import deque
from pathlib import Path

import grpc

from tqhpc._proto import pb, rpc
from tqhpc.access import read_access
from tqhpc.channel import open_aio_channel

CALL_TIMEOUT_SECONDS = 60.0


class SeedOnlyWorker:
    """Pings for work, runs it `concurrency` at a time, reports R then S or F; see the module's docstring."""

    def __init__(
        self, stub: rpc.TaskQueueStub, metadata: tuple[tuple[str, str], ...], workdir: Path, *,
        concurrency: int, prefetch: int, ping_interval: float, name: str = "seed-only",
    ) -> None:  # fmt: skip
        self.stub = stub
        self.metadata = metadata
        self.workdir = workdir
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.ping_interval = ping_interval
        self.name = name
        self.worker_id = 0
        self.held: set[int] = set()  # given to us and not yet reported S or F
        self.done: set[tuple[int, int]] = set()  # (task id, attempt) ended here: a ping answered late may list it
        self.waiting: deque[pb.Task] = deque()  # held, not started: no slot was free
        self.running: set[asyncio.Task[None]] = set()
        self.ran = 0
        self.pings = 0
        self.refused: list[str] = []
        self._room = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Register, then take and run work until `stop` is set; the tasks running then are let finish."""
        info = pb.WorkerInfo(name=self.name, concurrency=self.concurrency, prefetch=self.prefetch,
                             hostname=socket.gethostname(), pid=os.getpid())  # fmt: skip
        reply = await self.stub.RegisterWorker(info, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
        self.worker_id = reply.worker_id
        while not stop.is_set():
            self._room.clear()
            answer = await self.stub.PingAndTakeNewTasks(
                pb.WorkerId(worker_id=self.worker_id), metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS
            )
            self.pings += 1
            if answer.concurrency:
                self.concurrency = answer.concurrency
            for task in answer.tasks:
                if task.task_id not in self.held and (task.task_id, task.attempts) not in self.done:
                    self.held.add(task.task_id)
                    self.waiting.append(task)
            self._start_waiting()
            waiter = asyncio.create_task(self._room.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.ping_interval, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
        if self.running:
            await asyncio.wait(self.running)

    def _start_waiting(self) -> None:
        while self.waiting and len(self.running) < self.concurrency:
            runner = asyncio.create_task(self._run(self.waiting.popleft()))
            self.running.add(runner)
            runner.add_done_callback(self.running.discard)

    async def _run(self, task: pb.Task) -> None:
        try:
            if not await self._report(task.task_id, "R"):
                return
            process = await asyncio.create_subprocess_exec(
                "sh", "-c", task.command, cwd=self.workdir, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            out, err = await process.communicate()
            code = process.returncode if process.returncode is not None else -1
            logs = [pb.TaskLog(task_id=task.task_id, log_type=kind, log_text=data.decode(errors="replace"))
                    for kind, data in (("O", out), ("E", err)) if data]  # fmt: skip
            if logs:
                await self.stub.SendTaskLogs(iter(logs), metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
            await self._report(task.task_id, "S" if code == 0 else "F", code)
            self.ran += 1
        finally:
            self.done.add((task.task_id, task.attempts))
            self.held.discard(task.task_id)
            self.running.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._start_waiting()
            self._room.set()  # a slot is free: ask for more at once

    async def _report(self, task_id: int, letter: str, exit_code: int | None = None) -> bool:
        update = pb.TaskStatusUpdate(task_id=task_id, new_status=letter)
        if exit_code is not None:
            update.exit_code = exit_code
        try:
            await self.stub.UpdateTaskStatus(update, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            self.refused.append(f"{letter} for task {task_id}: {err}")
            return False
        return True


async def _main(args: argparse.Namespace) -> int:
    access = read_access(args.access)  # TLS with the pinned certificate, or plaintext where the file says so
    metadata = access.metadata
    args.workdir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_aio_channel(access) as channel:
        worker = SeedOnlyWorker(rpc.TaskQueueStub(channel), metadata, args.workdir, concurrency=args.concurrency,
                                prefetch=args.prefetch, ping_interval=args.ping_interval)  # fmt: skip
        try:
            await worker.run(stop)
        except grpc.RpcError as err:
            print(f"seed_worker.py: error: the server refused a call: {err}", file=sys.stderr)
            return 1
    print(f"seed-only worker {worker.worker_id}: ran {worker.ran} tasks, {worker.pings} pings, "
          f"{len(worker.refused)} reports refused {worker.refused[:3]}", flush=True)  # fmt: skip
    return 1 if worker.refused else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--access", type=Path, required=True, help="the server's access.toml")
    parser.add_argument("--workdir", type=Path, required=True, help="where the tasks run")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--ping-interval", type=float, default=1.0, help="seconds between pings while idle")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

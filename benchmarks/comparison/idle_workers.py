"""Many connected idle workers without many processes: in-process clients that do on the wire exactly what an idle
`tqhpc worker` does today (RegisterWorker once, then PingAndTakeNewTasks with its host state every ping interval),
each on its own connection. When the worker talks to the server over a long-lived stream instead, stream clients
replace these; the measurement around them stays the same.

They speak the public protocol only (`proto/taskqueue.proto`, the generated code in tqhpc._proto) and find the
server through `access.toml` as any client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import tomllib
from pathlib import Path

import grpc
import psutil
from grpc import aio

from tqhpc._proto import pb, rpc

REGISTER_TIMEOUT_SECONDS = 60.0


class IdleWorkers:
    """`count` idle workers pinging every `ping_interval` seconds, spread evenly over the interval."""

    def __init__(self, access_file: Path, count: int, ping_interval: float = 1.0) -> None:
        access = tomllib.loads(access_file.read_text())
        self.address = access["address"]
        self.metadata = (("authorization", f"bearer {access['token']}"),)
        self.count = count
        self.ping_interval = ping_interval
        self.registered = 0
        self.pings = 0
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._all_registered = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stats = pb.WorkerStats()

    async def start(self) -> None:
        """Connect them all; return once every one has registered."""
        self._refresh_stats()
        self._tasks = [asyncio.create_task(self._worker(index)) for index in range(self.count)]
        self._tasks.append(asyncio.create_task(self._keep_stats_fresh()))
        waiter = asyncio.create_task(self._all_registered.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], timeout=REGISTER_TIMEOUT_SECONDS,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if waiter not in done:
            waiter.cancel()
            raise RuntimeError(f"only {self.registered} of {self.count} idle workers registered: {self.errors[:3]}")

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self, index: int) -> None:
        async with aio.insecure_channel(self.address) as channel:
            stub = rpc.TaskQueueStub(channel)
            info = pb.WorkerInfo(
                name=f"idle-{index}", concurrency=1, prefetch=1, hostname=socket.gethostname(), pid=os.getpid(),
                container_capable=False, container_note="an idle benchmark client",
            )  # fmt: skip
            try:
                reply = await stub.RegisterWorker(info, metadata=self.metadata, timeout=REGISTER_TIMEOUT_SECONDS)
            except grpc.RpcError as err:
                self.errors.append(f"RegisterWorker: {err}")
                raise
            self.registered += 1
            if self.registered == self.count:
                self._all_registered.set()
            # Workers started at different moments ping at different moments.
            await self._sleep(random.uniform(0, self.ping_interval))
            while not self._stop.is_set():
                ping = pb.WorkerId(worker_id=reply.worker_id)
                ping.stats.CopyFrom(self._stats)
                try:
                    answer = await stub.PingAndTakeNewTasks(ping, metadata=self.metadata, timeout=30)
                except grpc.RpcError as err:
                    self.errors.append(f"PingAndTakeNewTasks: {err}")
                else:
                    self.pings += 1
                    if answer.tasks:  # an idle benchmark client runs nothing: hand work straight back
                        release = pb.TaskRelease(worker_id=reply.worker_id, task_ids=[t.task_id for t in answer.tasks],
                                                 reason="idle benchmark client")  # fmt: skip
                        await stub.ReleaseTasks(release, metadata=self.metadata, timeout=30)
                await self._sleep(self.ping_interval)

    async def _keep_stats_fresh(self) -> None:
        """A real worker samples its host once per ping; one sample a second serves all of these."""
        while not self._stop.is_set():
            self._refresh_stats()
            await self._sleep(self.ping_interval)

    def _refresh_stats(self) -> None:
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        self._stats = pb.WorkerStats(
            cpu_percent=psutil.cpu_percent(None), load1=load1, load5=load5, load15=load15,
            memory_used=memory.total - memory.available, memory_available=memory.available,
            disk_free=psutil.disk_usage("/").free, running_tasks=0, sampled_at=time.time(),
        )  # fmt: skip

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

"""Many connected idle workers without many processes: in-process clients that do on the wire exactly what an idle
worker does, all in one asyncio process, each on a connection of its own (as separate worker processes would be).

Two kinds:

- `StreamIdleWorkers`: what an idle `tqhpc worker` does on its session stream. RegisterWorker once, open
  WorkerSession with a hello, wait for the welcome; then, every ping interval, one WorkerReport heartbeat (sequence
  1, 2, 3...) carrying the host's state, and read its acknowledgement. As the worker's reporter does, one report is
  in flight at a time and the next heartbeat is due one ping interval after the previous one was acknowledged; as
  its host sampler does, the host's state goes with a heartbeat when the last one sent is at least
  STATS_MAX_AGE_SECONDS old, with `running_tasks` 0. On stop, a goodbye.
- `UnaryIdleWorkers`: what an idle worker of the seed protocol does: RegisterWorker once, then PingAndTakeNewTasks
  every ping interval with its id alone (the host's state is tqhpc's addition, which a seed worker knows nothing of).

Each client has a channel of its own with its own TCP connection (`grpc.use_local_subchannel_pool`: otherwise gRPC
shares one connection among channels to the same address, which no two worker processes would), with the keepalive
a worker's channel has. One sample of the host serves every client (each stamps it when it sends it): the server's
work does not depend on the values. Work pushed to or handed out to these clients is given straight back.

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
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psutil
from grpc import aio

from tqhpc._proto import pb, rpc
from tqhpc.access import read_access
from tqhpc.channel import open_aio_channel

REGISTER_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 30.0
GOODBYE_SECONDS = 5.0
STATS_MAX_AGE_SECONDS = 5.0
"""An idle worker sends its host's state again once the last state it sent is this old (tqhpc/worker/hoststats.py);
a worker whose count of running tasks changed sends it at once, which an idle one never does."""
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 60_000), ("grpc.use_local_subchannel_pool", 1)]
"""A worker's keepalive; and a connection of its own for each client."""


class IdleWorkers:
    """`count` idle clients; `start` returns once every one is connected (registered, and its session open)."""

    kind = ""
    rated: tuple[str, ...] = ()
    """The counts of `figures` that are also given per second over the measured window."""

    def __init__(self, access_file: Path, count: int, ping_interval: float = 1.0) -> None:
        self.access = read_access(access_file)
        self.metadata = self.access.metadata
        self.count = count
        self.ping_interval = ping_interval
        self.connected = 0
        self.worker_ids: list[int] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._all_connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sample = pb.WorkerStats()

    async def start(self) -> None:
        self._take_sample()
        self._tasks = [asyncio.create_task(self._client(index)) for index in range(self.count)]
        self._tasks.append(asyncio.create_task(self._keep_sampling()))
        waiter = asyncio.create_task(self._all_connected.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], timeout=REGISTER_TIMEOUT_SECONDS,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if waiter not in done:
            waiter.cancel()
            raise RuntimeError(f"only {self.connected} of {self.count} idle {self.kind} clients connected: "
                               f"{self.errors[:3]}")  # fmt: skip

    async def stop(self) -> None:
        """Every client leaves as its kind of worker does; then anything still running is cancelled."""
        self._stop.set()
        clients, sampler = self._tasks[:-1], self._tasks[-1:]
        sampler[0].cancel()
        _, late = await asyncio.wait(clients, timeout=GOODBYE_SECONDS + CALL_TIMEOUT_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def figures(self) -> dict[str, object]:
        raise NotImplementedError

    async def _client(self, index: int) -> None:
        async with open_aio_channel(self.access, options=CHANNEL_OPTIONS) as channel:
            stub = rpc.TaskQueueStub(channel)
            info = pb.WorkerInfo(
                name=f"idle-{self.kind}-{index}", concurrency=1, prefetch=1, hostname=socket.gethostname(),
                pid=os.getpid(), container_capable=False, container_note="an idle benchmark client",
            )  # fmt: skip
            try:
                reply = await stub.RegisterWorker(info, metadata=self.metadata, timeout=REGISTER_TIMEOUT_SECONDS)
            except grpc.RpcError as err:
                self.errors.append(f"RegisterWorker: {err}")
                raise
            self.worker_ids.append(reply.worker_id)
            await self._idle(stub, reply.worker_id)

    async def _idle(self, stub: rpc.TaskQueueStub, worker_id: int) -> None:
        raise NotImplementedError

    def _connected(self) -> None:
        self.connected += 1
        if self.connected == self.count:
            self._all_connected.set()

    def _stats(self) -> pb.WorkerStats:
        stats = pb.WorkerStats()
        stats.CopyFrom(self._sample)
        stats.sampled_at = time.time()
        return stats

    async def _keep_sampling(self) -> None:
        while not self._stop.is_set():
            await self._sleep(STATS_MAX_AGE_SECONDS)
            self._take_sample()

    def _take_sample(self) -> None:
        """What a worker's host sampler reads: memory, load, CPU since the last sample, free disk."""
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        self._sample = pb.WorkerStats(
            cpu_percent=psutil.cpu_percent(None), load1=load1, load5=load5, load15=load15,
            memory_used=memory.total - memory.available, memory_available=memory.available,
            disk_free=psutil.disk_usage("/").free, running_tasks=0,
        )  # fmt: skip

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or less if stopped; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()


class UnaryIdleWorkers(IdleWorkers):
    """Idle workers of the seed protocol: PingAndTakeNewTasks with their id every ping interval."""

    kind = "unary"
    rated = ("pings",)

    def __init__(self, access_file: Path, count: int, ping_interval: float = 1.0) -> None:
        super().__init__(access_file, count, ping_interval)
        self.pings = 0

    def figures(self) -> dict[str, object]:
        return {"pings": self.pings, "errors": self.errors[:5]}

    async def _idle(self, stub: rpc.TaskQueueStub, worker_id: int) -> None:
        self._connected()
        # Workers started at different moments ping at different moments.
        await self._sleep(random.uniform(0, self.ping_interval))
        while not self._stop.is_set():
            ping = pb.WorkerId(worker_id=worker_id)
            try:
                answer = await stub.PingAndTakeNewTasks(ping, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.RpcError as err:
                self.errors.append(f"PingAndTakeNewTasks: {err}")
            else:
                self.pings += 1
                if answer.tasks:  # an idle benchmark client runs nothing: hand work straight back
                    release = pb.TaskRelease(worker_id=worker_id, task_ids=[t.task_id for t in answer.tasks],
                                             reason="idle benchmark client")  # fmt: skip
                    await stub.ReleaseTasks(release, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
            await self._sleep(self.ping_interval)


class StreamIdleWorkers(IdleWorkers):
    """Idle `tqhpc worker`s on their session streams: a heartbeat report every ping interval, acknowledged."""

    kind = "stream"
    rated = ("heartbeats_sent", "heartbeats_acked", "heartbeats_with_stats")

    def __init__(self, access_file: Path, count: int, ping_interval: float = 1.0) -> None:
        super().__init__(access_file, count, ping_interval)
        self.sent = 0
        self.acked = 0
        self.with_stats = 0
        self.pushed = 0
        self.said_goodbye = 0

    def figures(self) -> dict[str, object]:
        return {
            "heartbeats_sent": self.sent,
            "heartbeats_acked": self.acked,
            "heartbeats_with_stats": self.with_stats,
            "tasks_pushed": self.pushed,
            "goodbyes_taken": self.said_goodbye,
            "errors": self.errors[:5],
        }

    async def _idle(self, stub: rpc.TaskQueueStub, worker_id: int) -> None:
        outbox: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        outbox.put_nowait(pb.WorkerMessage(hello=pb.WorkerHello(worker_id=worker_id)))
        call = stub.WorkerSession(_sent_from(outbox), metadata=self.metadata)
        try:
            first = await call.read()
            if first is aio.EOF or first.WhichOneof("kind") != "welcome":
                self.errors.append(f"WorkerSession: no welcome for worker {worker_id}, but {first}")
                return
            self._connected()
            await self._heartbeats(call, outbox)
            outbox.put_nowait(pb.WorkerMessage(goodbye=pb.WorkerGoodbye(reason="idle benchmark client stopped")))
            outbox.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GOODBYE_SECONDS):
                    while await call.read() is not aio.EOF:
                        pass
                    self.said_goodbye += 1
        except grpc.RpcError as err:
            if not self._stop.is_set():
                self.errors.append(f"WorkerSession: {err}")
        finally:
            outbox.put_nowait(None)
            call.cancel()

    async def _heartbeats(self, call: aio.StreamStreamCall, outbox: asyncio.Queue[pb.WorkerMessage | None]) -> None:
        """One report in flight; the next one a ping interval after the previous one's acknowledgement."""
        sequence = 0
        stats_sent_at = -STATS_MAX_AGE_SECONDS
        release: list[int] = []
        # Workers started at different moments send at different moments.
        if await self._sleep(random.uniform(0, self.ping_interval)):
            return
        while True:
            sequence += 1
            report = pb.WorkerReport(sequence=sequence, released_task_ids=release)
            if release:
                report.release_reason = "idle benchmark client"
            release = []
            if time.monotonic() - stats_sent_at >= STATS_MAX_AGE_SECONDS:
                report.stats.CopyFrom(self._stats())
                stats_sent_at = time.monotonic()
                self.with_stats += 1
            outbox.put_nowait(pb.WorkerMessage(report=report))
            self.sent += 1
            while True:
                message = await call.read()
                if message is aio.EOF:
                    self.errors.append("WorkerSession: the server ended the session")
                    return
                kind = message.WhichOneof("kind")
                push = message.push if kind == "push" else message.ack.push if kind == "ack" else None
                if push is not None and push.tasks:  # an idle benchmark client runs nothing: hand it back
                    self.pushed += len(push.tasks)
                    release += [task.task_id for task in push.tasks]
                if kind == "ack" and message.ack.sequence == sequence:
                    self.acked += 1
                    break
            if await self._sleep(self.ping_interval):
                return


async def _sent_from(outbox: asyncio.Queue[pb.WorkerMessage | None]) -> AsyncIterator[pb.WorkerMessage]:
    while (message := await outbox.get()) is not None:
        yield message

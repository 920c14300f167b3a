"""Task output from the worker to the server: buffered, merged, and sent in one client stream per flush.

A stream per line would cost an RPC per line; here output waits at most `interval` seconds (or until a buffer
fills) and every waiting chunk of every task goes in one SendTaskLogs call. A task that writes faster than the
server takes it is slowed down (its pipe fills) rather than the worker's memory growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import grpc

from .._proto import pb
from .connection import Connection

log = logging.getLogger("tqhpc.worker")

MAX_MESSAGE_DATA = 1 << 20
FLUSH_AT_BYTES = 256 * 1024
HIGH_WATER_BYTES = 8 * 1024 * 1024


class LogShipper:
    def __init__(self, connection: Connection, interval: float) -> None:
        self.connection = connection
        self.worker_id: int | None = None  # set once registered: the server drops output of tasks we lost
        self.interval = interval
        self._pending: list[tuple[int, str, bytes]] = []
        self._pending_bytes = 0
        self._send_lock = asyncio.Lock()
        self._data_waiting = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def add(self, task_id: int, log_type: str, data: bytes) -> None:
        self._pending.append((task_id, log_type, data))
        self._pending_bytes += len(data)
        self._data_waiting.set()
        if self._pending_bytes >= HIGH_WATER_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Send everything added so far; return once the server has stored it (or refused it)."""
        async with self._send_lock:
            if not self._pending:
                return
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            self._data_waiting.clear()
            messages = list(_messages(batch, self.worker_id))
            try:
                await self.connection.send_stream("SendTaskLogs", messages, "sending task output")
            except grpc.aio.AioRpcError as err:
                # The server stored what it could and names what it refused (a task deleted meanwhile).
                log.warning("the server refused some task output: %s", err.details())

    async def _run(self) -> None:
        while True:
            await self._data_waiting.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_for_full_buffer(), self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("sending task output failed")

    async def _wait_for_full_buffer(self) -> None:
        while self._pending_bytes < FLUSH_AT_BYTES:
            self._data_waiting.clear()
            await self._data_waiting.wait()


def _messages(batch: list[tuple[int, str, bytes]], worker_id: int | None) -> Iterator[pb.TaskLog]:
    """Merge consecutive chunks of one task and stream, then cut into messages of at most MAX_MESSAGE_DATA."""
    merged: list[tuple[int, str, bytearray]] = []
    for task_id, log_type, data in batch:
        if merged and merged[-1][0] == task_id and merged[-1][1] == log_type:
            merged[-1][2].extend(data)
        else:
            merged.append((task_id, log_type, bytearray(data)))
    for task_id, log_type, data in merged:
        for start in range(0, len(data), MAX_MESSAGE_DATA):
            piece = bytes(data[start : start + MAX_MESSAGE_DATA])
            message = pb.TaskLog(task_id=task_id, log_type=log_type, worker_id=worker_id)
            try:
                message.log_text = piece.decode()
            except UnicodeDecodeError:
                message.log_bytes = piece
            yield message

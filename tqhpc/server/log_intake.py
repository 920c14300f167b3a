"""What a SendTaskLogs stream brings in: good chunks stored in batches, bad ones refused one by one.

A bad chunk (an unknown task, a log type no sender uses, a message protobuf cannot read) never costs the good
chunks of the same stream: they are stored, and the answer names what was dropped and how much was kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from .._proto import pb
from ..plural import plural
from .logs import LOG_TYPE_SPELLINGS, LogStore
from .registration import Undecodable

LOG_BATCH_CHUNKS = 256
LOG_BATCH_BYTES = 1 << 20

Holders = Callable[[set[int]], Awaitable[dict[int, int | None]]]
"""The holding worker of each existing task among the ids (None: held by none); unknown ids are left out."""


@dataclass
class LogIntake:
    holders: Holders
    logs: LogStore
    stored: int = 0
    stale: int = 0  # chunks of a worker that no longer holds the task: dropped, not an error
    _batch: list[tuple[int, str, bytes, int | None]] = field(default_factory=list)
    _size: int = 0
    _bad_types: set[str] = field(default_factory=set)
    _unknown: set[int] = field(default_factory=set)
    _undecodable: list[Undecodable] = field(default_factory=list)

    async def take(self, chunk: pb.TaskLog | Undecodable) -> None:
        """One chunk of the stream; stores a batch once it is full.

        `stdout` and `stderr` are taken for `O` and `E`: scitq's worker sends them and never reads the answer, so
        refusing them would lose all its output without anyone noticing.
        """
        if isinstance(chunk, Undecodable):
            self._undecodable.append(chunk)
            return
        log_type = LOG_TYPE_SPELLINGS.get(chunk.log_type)
        if log_type is None:
            self._bad_types.add(chunk.log_type)
            return
        data = chunk.log_bytes or chunk.log_text.encode()
        if not data:
            return
        self._batch.append((chunk.task_id, log_type, data, chunk.worker_id if chunk.HasField("worker_id") else None))
        self._size += len(data)
        if len(self._batch) >= LOG_BATCH_CHUNKS or self._size >= LOG_BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Store the batch: chunks of known tasks, from their holder or from a sender that names no worker."""
        if not self._batch:
            return
        batch, self._batch, self._size = self._batch, [], 0
        holders = await self.holders({task_id for task_id, _, _, _ in batch})
        good = []
        for task_id, log_type, data, worker_id in batch:
            if task_id not in holders:
                self._unknown.add(task_id)
            elif worker_id is not None and holders[task_id] != worker_id:
                self.stale += 1  # late output of a worker that lost the task: not this attempt's
            else:
                good.append((task_id, log_type, data))
        await self.logs.append(good)
        self.stored += len(good)

    def refusal(self) -> tuple[grpc.StatusCode, str] | None:
        """The stream's answer when some of it was dropped (None: all of it was stored)."""
        if self._undecodable:
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{plural(len(self._undecodable), 'chunk')} dropped, {self._undecodable[0].describe()}; "
                f"{plural(self.stored, 'other')} stored",
            )
        if self._bad_types:
            letters = ", ".join(repr(t) for t in sorted(self._bad_types))
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"log_type must be 'O' or 'stdout', 'E' or 'stderr', not {letters}; "
                f"{plural(self.stored, 'other chunk')} stored",
            )
        if self._unknown:
            ids = ", ".join(str(i) for i in sorted(self._unknown)[:10])
            return (
                grpc.StatusCode.NOT_FOUND,
                f"no task {ids}: their chunks were dropped; {plural(self.stored, 'other')} stored",
            )
        return None


__all__ = ["LogIntake"]

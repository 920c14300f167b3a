"""What a SendTaskLogs stream brings in: good chunks held for a moment, then stored, bad ones refused one by one.

A seed client cannot tell which of its chunks the server stored: when its call breaks (cancelled, past its
deadline, its connection cut) it sends the whole batch again. Storing chunks as they arrived would store the part
that came before the break twice. So a call's chunks are held, and stored in one append when the client ends its
stream: a broken call stores nothing and its resend stores its chunks once. That covers a client sending batches,
each call done within moments. A client that keeps one call open for a whole task and sends its lines as they come
(scitq's worker does) must have them seen as they come, though: once a call has been open for HOLD_SECONDS, or
holds HOLD_BYTES, what it holds is stored and every later chunk is stored as it arrives. Such a call, broken and
sent again, stores its output twice; the seed protocol has no way to say where a chunk starts. Chunks that do say
it (`offset`, from a newer client) are kept only beyond what is stored, as a worker's session reports are.

A bad chunk (an unknown task, a log type no sender uses, a message protobuf cannot read) never costs the good
chunks of the same stream: they are stored, and the answer names what was dropped and how much was kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from .._proto import pb
from ..plural import plural
from .logs import LOG_TYPE_SPELLINGS, Chunk, LogStore
from .registration import Undecodable

log = logging.getLogger("tqhpc.server")

HOLD_SECONDS = 2.0
"""How long a call's chunks are held before they are stored as they come (see above)."""
HOLD_BYTES = 8 * 1024 * 1024
"""The most a call holds in memory; beyond it, its chunks are stored as they come."""
HELD_PIECE_BYTES = 128
"""What holding one more piece costs beyond its bytes, counted against HOLD_BYTES: many tiny chunks count too."""

Holders = Callable[[set[int]], Awaitable[dict[int, int | None]]]
"""The holding worker of each existing task among the ids (None: held by none); unknown ids are left out."""


@dataclass
class _Piece:
    """Consecutive chunks of one task's stream from one sender, joined."""

    task_id: int
    log_type: str
    worker_id: int | None
    offset: int | None
    data: bytearray
    chunks: int = 1

    def continued_by(self, task_id: int, log_type: str, worker_id: int | None, offset: int | None) -> bool:
        """Whether a chunk with these fields continues this piece (the same stream, and where this one ends)."""
        if (task_id, log_type, worker_id) != (self.task_id, self.log_type, self.worker_id):
            return False
        if self.offset is None or offset is None:
            return self.offset is None and offset is None
        return offset == self.offset + len(self.data)


@dataclass
class LogIntake:
    holders: Holders
    logs: LogStore
    hold_bytes: int = HOLD_BYTES
    live: bool = False  # the call went past its hold: chunks are stored as they come
    stored: int = 0
    stale: int = 0  # chunks of a worker that no longer holds the task: dropped, not an error
    _pieces: list[_Piece] = field(default_factory=list)
    _size: int = 0
    _bad_types: set[str] = field(default_factory=set)
    _unknown: set[int] = field(default_factory=set)
    _undecodable: list[Undecodable] = field(default_factory=list)
    _storing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take(self, chunk: pb.TaskLog | Undecodable) -> None:
        """Hold one chunk of the stream (`should_store` then says whether it is time to store what is held).

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
        offset = chunk.offset if chunk.HasField("offset") else None
        worker_id = chunk.worker_id if chunk.HasField("worker_id") else None
        last = self._pieces[-1] if self._pieces else None
        if last is not None and last.continued_by(chunk.task_id, log_type, worker_id, offset):
            last.data.extend(data)
            last.chunks += 1
            self._size += len(data)
        else:
            self._pieces.append(_Piece(chunk.task_id, log_type, worker_id, offset, bytearray(data)))
            self._size += len(data) + HELD_PIECE_BYTES
        if self._size > self.hold_bytes:
            self.live = True

    @property
    def should_store(self) -> bool:
        return self.live and bool(self._pieces)

    async def store(self) -> None:
        """Store what the call brought, in one append: chunks of known tasks, from their holder or from a sender
        that names no worker."""
        async with self._storing:  # in the order taken, when the hold's end and a new chunk both store
            await self._store_held()

    async def _store_held(self) -> None:
        pieces, self._pieces, self._size = self._pieces, [], 0
        if not pieces:
            return
        generations = self.logs.generations({piece.task_id for piece in pieces})  # see LogStore.generations
        holders = await self.holders({piece.task_id for piece in pieces})
        good = []
        for piece in pieces:
            if piece.task_id not in holders:
                self._unknown.add(piece.task_id)
            elif piece.worker_id is not None and holders[piece.task_id] != piece.worker_id:
                self.stale += piece.chunks  # late output of a worker that lost the task: not this attempt's
            else:
                good.append(Chunk(piece.task_id, piece.log_type, piece.data, piece.offset))  # the bytes, not a copy
                self.stored += piece.chunks
        await self.logs.append(good, generations)

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


__all__ = ["HOLD_BYTES", "HOLD_SECONDS", "LogIntake"]

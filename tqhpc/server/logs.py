"""Task output on disk: `logs/<shard>/<id>.out` and `.err`, plain files a user can read with `less`.

Output never goes into the database. Followers (StreamTaskLogs) read the files from their own offsets and sleep on
an event that appends and terminal status changes set, so any number of readers follow one task at once.

The current files hold the current attempt's output only (a requeue moves them aside), so a file's size is how much
of that attempt's stream is stored. A chunk that says where it starts in the stream (its offset) is therefore kept
only beyond that size: a chunk sent again after a crash, wholly or partly stored already, is not stored twice.

Output is accepted from the worker holding the task, checked before it is written. The task can be requeued in
between (its worker lost, deleted, its report of failure read first): then its files are moved aside, and the chunks
checked before belong to the attempt that ended. Each move aside counts a generation of the task's files; chunks
are written only into the generation they were checked against, so an ended attempt never writes into the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

STDOUT, STDERR = "O", "E"
LOG_TYPES = (STDOUT, STDERR)
LOG_TYPE_SPELLINGS = {STDOUT: STDOUT, STDERR: STDERR, "stdout": STDOUT, "stderr": STDERR}
"""Every `TaskLog.log_type` a sender may use, and the letter it is stored as: scitq's worker spells them out."""
_SUFFIX = {STDOUT: "out", STDERR: "err"}
READ_CHUNK = 64 * 1024

log = logging.getLogger("tqhpc.server")


@dataclass(frozen=True)
class Chunk:
    """Output of one task's stream; `offset` is where `data` starts in the attempt's stream (None: not said)."""

    task_id: int
    log_type: str
    data: bytes | bytearray
    offset: int | None = None


ROTATION_SLACK = 4
"""How far past its attempts a task's moved-aside output may be numbered (an attempt rotated twice takes the next)."""


class LogStore:
    def __init__(self, root: Path, cap: int = 0) -> None:
        self.root = root
        self.cap = cap  # the most bytes one attempt's stdout (or stderr) keeps, then a note; 0: no limit
        root.mkdir(mode=0o700, exist_ok=True)
        self._waiters: defaultdict[int, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._generations: dict[int, int] = {}  # times each task's files were moved aside since the server started
        self.dropped = 0  # chunks of an attempt that ended between their check and their write

    def path(self, task_id: int, log_type: str) -> Path:
        return self.root / f"{task_id // 1000:04d}" / f"{task_id}.{_SUFFIX[log_type]}"

    def generations(self, task_ids: Iterable[int]) -> dict[int, int]:
        """The generation of each task's files, to be taken before checking who may write into them."""
        with self._lock:
            return {task_id: self._generations.get(task_id, 0) for task_id in task_ids}

    def write(self, chunks: Iterable[Chunk], generations: Mapping[int, int] | None = None) -> None:
        """Append chunks in order, one open per file per call; blocking, so run it off the event loop.

        A chunk with an offset is kept only beyond what its file holds: skipped when wholly stored, trimmed when it
        overlaps. One that starts beyond the end (output lost on the way) is stored as it comes, and logged.
        With `generations` (see `generations`), chunks of a task whose files moved aside since are dropped.
        """
        grouped: dict[tuple[int, str], list[Chunk]] = {}
        for chunk in chunks:
            grouped.setdefault((chunk.task_id, chunk.log_type), []).append(chunk)
        with self._lock:  # the stored size read and the append it decides are one step
            for (task_id, log_type), group in grouped.items():
                if generations is not None and generations.get(task_id) != self._generations.get(task_id, 0):
                    self._drop_ended(task_id, len(group))
                    continue
                path = self.path(task_id, log_type)
                try:
                    handle = open(path, "ab")  # noqa: SIM115 - closed below, after the parent is made on demand
                except FileNotFoundError:
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    handle = open(path, "ab")  # noqa: SIM115
                with handle:
                    stored = os.fstat(handle.fileno()).st_size
                    parts: list[bytes | bytearray] = []
                    for chunk in group:
                        if self.cap and stored >= self.cap:
                            break  # cut already: the rest of this attempt's stream is dropped
                        data = _beyond(stored, chunk)
                        if self.cap and stored + len(data) >= self.cap:
                            data = bytes(data[: self.cap - stored]) + self._cut_note(task_id, log_type)
                        parts.append(data)
                        stored += len(data)
                    handle.write(b"".join(parts))

    def _cut_note(self, task_id: int, log_type: str) -> bytes:
        log.warning("task %d: its %s output reached max_task_output (%d bytes): the rest is dropped",
                    task_id, log_type, self.cap)  # fmt: skip
        return (
            f"\n[tqhpc: this output was cut at {self.cap} bytes (the server's max_task_output); the rest was dropped]\n"
        ).encode()

    def _drop_ended(self, task_id: int, count: int) -> None:
        self.dropped += count
        log.info("task %d: %d chunks of output of an attempt that ended meanwhile dropped", task_id, count)

    async def append(self, chunks: list[Chunk], generations: Mapping[int, int] | None = None) -> None:
        await asyncio.to_thread(self.write, chunks, generations)
        self.notify({chunk.task_id for chunk in chunks})

    def rotate(self, attempts: Mapping[int, int]) -> None:
        """Move each task's current output aside as `ID.N.out` / `ID.N.err`, N the attempt that wrote it.

        Naming by attempt lets a reader pair each file with that attempt's resource record; should that name be
        taken already (an attempt rotated twice), the next free number is used rather than overwrite anything.
        """
        with self._lock:
            for task_id, attempt in attempts.items():
                self._rotate(task_id, attempt)

    def _rotate(self, task_id: int, attempt: int) -> None:
        self._generations[task_id] = self._generations.get(task_id, 0) + 1
        current = {t: self.path(task_id, t) for t in LOG_TYPES}
        if not any(p.exists() for p in current.values()):
            return
        number = max(attempt, 1)
        while any(p.with_name(f"{task_id}.{number}.{_SUFFIX[t]}").exists() for t, p in current.items()):
            number += 1
        for log_type, path in current.items():
            with contextlib.suppress(FileNotFoundError):
                path.rename(path.with_name(f"{task_id}.{number}.{_SUFFIX[log_type]}"))

    def remove(self, attempts: Mapping[int, int]) -> None:
        """Delete the output of pruned tasks: the current files and every attempt's moved aside (blocking)."""
        with self._lock:
            for task_id, attempt in attempts.items():
                self._generations.pop(task_id, None)
                for log_type, path in ((t, self.path(task_id, t)) for t in LOG_TYPES):
                    path.unlink(missing_ok=True)
                    # Moved aside as ID.N.*, N at most a few past the attempts when a name was taken (see _rotate).
                    for number in range(1, attempt + ROTATION_SLACK):
                        path.with_name(f"{task_id}.{number}.{_SUFFIX[log_type]}").unlink(missing_ok=True)

    def notify(self, task_ids: Iterable[int]) -> None:
        for task_id in task_ids:
            for event in self._waiters.get(task_id, ()):
                event.set()

    def read_from(self, task_id: int, log_type: str, offset: int) -> bytes:
        try:
            with open(self.path(task_id, log_type), "rb") as handle:
                handle.seek(offset)
                return handle.read(READ_CHUNK)
        except FileNotFoundError:
            return b""

    def size(self, task_id: int, log_type: str) -> int:
        try:
            return os.path.getsize(self.path(task_id, log_type))
        except FileNotFoundError:
            return 0

    def waiter(self, task_id: int) -> _Waiter:
        return _Waiter(self, task_id)


def _beyond(stored: int, chunk: Chunk) -> bytes | bytearray:
    """What of `chunk` its stream does not hold yet, the stream holding `stored` bytes."""
    if chunk.offset is None or chunk.offset == stored:
        return chunk.data
    if chunk.offset > stored:
        log.warning(
            "task %d: its %s output has %d bytes stored, the next chunk starts at byte %d: the bytes between never "
            "arrived; storing the chunk as it came", chunk.task_id, chunk.log_type, stored, chunk.offset,
        )  # fmt: skip
        return chunk.data
    return chunk.data[stored - chunk.offset :]  # empty when wholly stored already


class _Waiter:
    """An event registered for one task while a follower lives (a context manager, so it never leaks)."""

    def __init__(self, logs: LogStore, task_id: int) -> None:
        self.logs, self.task_id, self.event = logs, task_id, asyncio.Event()

    def __enter__(self) -> asyncio.Event:
        self.logs._waiters[self.task_id].add(self.event)
        return self.event

    def __exit__(self, *exc: object) -> None:
        waiters = self.logs._waiters.get(self.task_id)
        if waiters is not None:
            waiters.discard(self.event)
            if not waiters:
                del self.logs._waiters[self.task_id]

"""GetOverview: the queue at a glance for `tqhpc top`, read beside the single writer.

`tqhpc top` asks once a second for as long as someone watches, so the answer is small whatever the queue's length
(counts, a few failures, the live workers) and is read on a read-only connection of its own, in a thread: the
writer, and so every submit and worker report, never waits for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .._proto import pb
from ..errors import InvalidArgument
from ..records import WorkerInfo
from ..store import overview as overview_ops
from ..store import usage as usage_ops
from ..store import workers as worker_ops
from ..store.database import connect_reader, snapshot
from .logs import STDERR, LogStore

DEFAULT_FAILURES = 5
MAX_FAILURES = 50
STDERR_TAIL_BYTES = 400
"""How much of the end of a failed task's stderr is sent: the last lines, where the error usually is."""


def failure_limit(asked: int) -> int:
    if asked > MAX_FAILURES:
        raise InvalidArgument(f"failures is at most {MAX_FAILURES}, not {asked}")
    return asked or DEFAULT_FAILURES


@dataclass(frozen=True)
class Snapshot:
    """One reading of the store, with the end of each listed failure's stderr."""

    read_at: float
    queue: overview_ops.QueueOverview
    workers: list[WorkerInfo]
    stderr_tails: list[str]


def read(database: Path, logs: LogStore, name: str, failures: int) -> Snapshot:
    """Blocking: run it in a thread. Counts, failures and workers come from one snapshot, so they agree."""
    conn = connect_reader(database)
    try:
        now = time.time()
        with snapshot(conn):
            queue = overview_ops.read(conn, now, failures, name)
            workers = usage_ops.with_stats(conn, worker_ops.list_workers(conn))
    finally:
        conn.close()
    return Snapshot(now, queue, workers, [stderr_tail(logs, task.task_id) for task in queue.failures])


def stderr_tail(logs: LogStore, task_id: int) -> str:
    """The last STDERR_TAIL_BYTES of the task's stderr as text, starting at a line's start when it was cut."""
    size = logs.size(task_id, STDERR)
    start = max(0, size - STDERR_TAIL_BYTES)
    data = logs.read_from(task_id, STDERR, start)[:STDERR_TAIL_BYTES]
    if start and b"\n" in data[:-1]:
        data = data[data.index(b"\n") + 1 :]
    return data.decode(errors="replace").rstrip()


def message(found: Snapshot, workers: list[WorkerInfo]) -> pb.Overview:
    """The wire form; `workers` are the snapshot's, as the caller completed them (heartbeats kept in memory)."""
    ten, sixty = found.queue.ended
    return pb.Overview(
        counts=found.queue.counts,
        ended_last_10s=ten,
        ended_last_60s=sixty,
        failures=[
            pb.OverviewFailure(task=task.to_message(), stderr_tail=tail)
            for task, tail in zip(found.queue.failures, found.stderr_tails, strict=True)
        ],
        workers=[worker.to_message() for worker in workers],
        server_time=found.read_at,
    )

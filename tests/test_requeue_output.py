"""A requeued task's output: the attempt that ended keeps its own, and the next attempt starts on fresh files.

The store and the output files are real (a SQLite file, a log directory); the service runs in-process so the test
can act at the one moment that matters: right after the commit that sends a task back to the queue.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from tqhpc.records import WorkerState
from tqhpc.server.logs import STDOUT, Chunk, LogStore
from tqhpc.server.service import TaskQueueService
from tqhpc.store import Database, taskflow
from tqhpc.store import workers as worker_ops
from tqhpc.store.taskflow import NewTask


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "tqhpc.db")
    yield database
    database.close()


def _task_held_by_a_worker(db: Database) -> tuple[int, int]:
    def setup(conn: sqlite3.Connection) -> tuple[int, int]:
        task_id = taskflow.insert_batch(conn, [NewTask("echo hi")], 1.0)[0]
        worker = worker_ops.register(conn, name="w", concurrency=1, prefetch=0, hostname="h", pid=1, now=1.0)
        worker_ops.dispatch(conn, worker.worker_id, 2.0)
        return task_id, worker.worker_id

    return db.call(setup)


def _queue_at_next_commit(db: Database, probe: Callable[[sqlite3.Connection], None]) -> Future[Future[None]]:
    """Queue `probe` to the writer while the next commit runs: it becomes the very next operation after that commit,
    as a worker's report that takes the requeued task would be. Answers with the probe's own future."""
    queued: Future[Future[None]] = Future()

    def trace(statement: str) -> None:
        if not queued.done() and statement.strip().upper() == "COMMIT":
            queued.set_result(db.submit(probe))

    db._conn.set_trace_callback(trace)
    return queued


def test_the_next_operation_after_a_requeue_finds_the_ended_attempts_output_moved_aside(
    db: Database, tmp_path: Path
) -> None:
    """The worker holding a task is lost; the operation right after that commit hands the task on, and the next
    attempt's first bytes arrive. They must start a fresh file, and the ended attempt's bytes stay in `ID.1.out`."""
    logs = LogStore(tmp_path / "logs")
    service = TaskQueueService(db, logs, providers={})
    task_id, worker_id = _task_held_by_a_worker(db)
    logs.write([Chunk(task_id, STDOUT, b"first attempt\n", 0)])
    seen: dict[str, bool] = {}

    def next_attempt_writes(conn: sqlite3.Connection) -> None:
        seen["old output still current"] = logs.path(task_id, STDOUT).exists()
        logs.write([Chunk(task_id, STDOUT, b"second attempt\n", 0)])  # its stream starts at byte 0

    probe = _queue_at_next_commit(db, next_attempt_writes)

    requeued = asyncio.run(service.retire_if_live(worker_id, WorkerState.LOST, "lost in a test"))
    probe.result(timeout=5).result(timeout=5)

    assert requeued == [task_id]
    assert seen == {"old output still current": False}
    assert logs.path(task_id, STDOUT).read_bytes() == b"second attempt\n"
    assert logs.path(task_id, STDOUT).with_name(f"{task_id}.1.out").read_bytes() == b"first attempt\n"


def test_output_checked_before_a_requeue_is_not_written_into_the_next_attempt(tmp_path: Path) -> None:
    """A worker's chunks are checked against the task's holder, then written; when the task is requeued in between,
    they belong to the attempt that ended and are dropped, not appended to the next attempt's fresh files."""
    logs = LogStore(tmp_path / "logs")
    logs.write([Chunk(5, STDOUT, b"attempt 1\n", 0)])
    checked = logs.generations([5])  # the holder check happens here
    logs.rotate({5: 1})  # the task is requeued meanwhile
    logs.write([Chunk(5, STDOUT, b"late bytes of attempt 1\n", 10)], checked)
    logs.write([Chunk(5, STDOUT, b"attempt 2\n", 0)], logs.generations([5]))

    assert logs.path(5, STDOUT).read_bytes() == b"attempt 2\n"
    assert logs.path(5, STDOUT).with_name("5.1.out").read_bytes() == b"attempt 1\n"
    assert logs.dropped == 1


def test_after_commit_runs_once_committed_and_never_for_an_undone_operation(db: Database, tmp_path: Path) -> None:
    reader = sqlite3.connect(tmp_path / "tqhpc.db", check_same_thread=False)
    seen: list[tuple[str, int]] = []
    gate = threading.Event()
    blocker = db.submit(lambda c: gate.wait(5))  # the next three are queued together: one batch

    def insert_then(label: str, fail: bool = False):
        def op(conn: sqlite3.Connection) -> None:
            taskflow.insert_batch(conn, [NewTask(f"echo {label}")], 1.0)
            db.after_commit(lambda: seen.append((label, reader.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])))
            if fail:
                raise ValueError("refused")

        return op

    first = db.submit(insert_then("first"))
    refused = db.submit(insert_then("refused", fail=True))
    last = db.submit(insert_then("last"))
    gate.set()
    blocker.result(5), first.result(5), last.result(5)
    with pytest.raises(ValueError):
        refused.result(5)

    assert seen == [("first", 2), ("last", 2)]  # both see the committed batch; the refused one left nothing
    with pytest.raises(RuntimeError, match="writer thread"):
        db.after_commit(lambda: None)

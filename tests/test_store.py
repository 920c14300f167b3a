"""The store on a real SQLite file: schema, batching writer, assignment limits, requeue."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tqhpc.errors import FailedPrecondition, NotFound
from tqhpc.records import WorkerState
from tqhpc.status import Status, TransitionError
from tqhpc.store import Database, taskflow
from tqhpc.store import tasks as task_ops
from tqhpc.store import workers as worker_ops
from tqhpc.store.schema import MIGRATIONS, SchemaError, migrate
from tqhpc.store.taskflow import NewTask


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "tqhpc.db")
    yield database
    database.close()


def _register(db: Database, concurrency: int = 2, prefetch: int = 1) -> int:
    record = db.call(
        lambda c: worker_ops.register(
            c, name="w", concurrency=concurrency, prefetch=prefetch, hostname="h", pid=1, now=1.0
        )
    )
    return record.worker_id


def test_wal_mode_and_schema_version(db: Database, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "tqhpc.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"tasks_by_status", "tasks_by_worker"} <= indexes


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (len(MIGRATIONS) + 1,))
    with pytest.raises(SchemaError, match="newer than this tqhpc knows"):
        migrate(conn)


def test_one_refused_operation_does_not_undo_its_batch(db: Database) -> None:
    """Operations queued together share a transaction; a failing one is rolled back alone."""
    gate = threading.Event()
    blocker = db.submit(lambda c: gate.wait(5))
    good = db.submit(lambda c: taskflow.insert_batch(c, [NewTask("echo a")], 1.0))

    def bad(conn: sqlite3.Connection) -> None:
        taskflow.insert_batch(conn, [NewTask("echo b")], 1.0)
        raise NotFound("nope")

    refused = db.submit(bad)
    after = db.submit(lambda c: taskflow.insert_batch(c, [NewTask("echo c")], 1.0))
    gate.set()
    blocker.result()
    assert good.result() == [1]
    with pytest.raises(NotFound):
        refused.result()
    assert after.result() == [2]  # the rolled-back insert left no trace, not even its id
    assert [t.command for t in db.call(lambda c: taskflow.list_tasks(c, frozenset()))] == ["echo a", "echo c"]


def test_ping_never_hands_out_more_than_concurrency_plus_prefetch(db: Database) -> None:
    db.call(lambda c: taskflow.insert_batch(c, [NewTask(f"echo {i}") for i in range(10)], 1.0))
    worker = _register(db, concurrency=2, prefetch=1)
    first = db.call(lambda c: worker_ops.ping(c, worker, 2.0))
    assert [t.task_id for t in first.tasks] == [1, 2, 3]  # oldest first
    again = db.call(lambda c: worker_ops.ping(c, worker, 3.0))
    assert [t.task_id for t in again.tasks] == [1, 2, 3]  # unaccepted tasks are sent again, no new ones
    for task_id in (1, 2, 3):
        db.call(lambda c, t=task_id: task_ops.update_status(c, t, Status.ACCEPTED, 4.0, worker_id=worker))
    assert db.call(lambda c: worker_ops.ping(c, worker, 5.0)).tasks == []
    db.call(lambda c: task_ops.update_status(c, 1, Status.RUNNING, 6.0, worker_id=worker))
    db.call(lambda c: task_ops.update_status(c, 1, Status.SUCCEEDED, 7.0, worker_id=worker, exit_code=0))
    refill = db.call(lambda c: worker_ops.ping(c, worker, 8.0))
    assert [t.task_id for t in refill.tasks] == [4]
    assert db.call(lambda c: taskflow.held_slots(c, worker)) == 3


def test_draining_worker_gets_nothing(db: Database) -> None:
    db.call(lambda c: taskflow.insert_batch(c, [NewTask("true")], 1.0))
    worker = _register(db)
    assert db.call(lambda c: worker_ops.ping(c, worker, 2.0, draining=True)).tasks == []
    assert db.call(lambda c: worker_ops.get_worker(c, worker)).state == WorkerState.DRAINING


def test_a_worker_cannot_report_for_a_task_it_does_not_hold(db: Database) -> None:
    db.call(lambda c: taskflow.insert_batch(c, [NewTask("true")], 1.0))
    first, second = _register(db), _register(db)
    db.call(lambda c: worker_ops.ping(c, first, 2.0))
    with pytest.raises(FailedPrecondition, match="held by worker 1, not by worker 2"):
        db.call(lambda c: task_ops.update_status(c, 1, Status.RUNNING, 3.0, worker_id=second))
    with pytest.raises(TransitionError, match="cannot become S"):
        db.call(lambda c: task_ops.update_status(c, 1, Status.SUCCEEDED, 3.0, worker_id=first))
    assert db.call(lambda c: task_ops.get_task(c, 1)).status == Status.ASSIGNED


def test_lost_worker_tasks_go_back_to_pending(db: Database) -> None:
    db.call(lambda c: taskflow.insert_batch(c, [NewTask("a"), NewTask("b"), NewTask("c")], 1.0))
    worker = _register(db, concurrency=1, prefetch=1)
    db.call(lambda c: worker_ops.ping(c, worker, 2.0))
    db.call(lambda c: task_ops.update_status(c, 1, Status.RUNNING, 2.5, worker_id=worker))
    assert db.call(lambda c: worker_ops.silent_workers(c, 1.5)) == []
    assert db.call(lambda c: worker_ops.silent_workers(c, 10.0)) == [worker]
    record, requeued = db.call(lambda c: worker_ops.retire(c, worker, WorkerState.LOST, "lost"))
    assert record.state == WorkerState.LOST and requeued == [1, 2]
    tasks = db.call(lambda c: taskflow.list_tasks(c, frozenset()))
    assert [(t.status, t.worker_id, t.reason) for t in tasks[:2]] == [(Status.PENDING, None, "lost")] * 2
    with pytest.raises(FailedPrecondition, match="is lost"):
        db.call(lambda c: worker_ops.ping(c, worker, 11.0))


def test_unknown_worker_and_task(db: Database) -> None:
    with pytest.raises(NotFound, match="no worker 42"):
        db.call(lambda c: worker_ops.ping(c, 42, 1.0))
    with pytest.raises(NotFound, match="no task 7"):
        db.call(lambda c: task_ops.update_status(c, 7, Status.RUNNING, 1.0))


def test_close_commits_everything_queued(tmp_path: Path) -> None:
    database = Database(tmp_path / "t.db")
    futures = [
        database.submit(lambda c, i=i: taskflow.insert_batch(c, [NewTask(f"echo {i}")], 1.0)) for i in range(500)
    ]
    database.close()
    assert all(f.done() for f in futures)
    reopened = Database(tmp_path / "t.db")
    assert len(reopened.call(lambda c: taskflow.list_tasks(c, frozenset()))) == 500
    reopened.close()

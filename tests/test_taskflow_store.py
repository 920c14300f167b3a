"""The task flow's store rules on a real SQLite file: cancel races, dependency chains, retries, slot fitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tqhpc.errors import InvalidArgument
from tqhpc.records import TaskInfo
from tqhpc.status import Status, TransitionError, after_failed_attempt, from_dependencies
from tqhpc.store import Database, taskflow
from tqhpc.store import tasks as task_ops
from tqhpc.store import workers as worker_ops
from tqhpc.store.taskflow import NewTask


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "tqhpc.db")
    yield database
    database.close()


def _worker(db: Database, concurrency: int = 2, prefetch: int = 0) -> int:
    return db.call(
        lambda c: worker_ops.register(
            c, name="w", concurrency=concurrency, prefetch=prefetch, hostname="h", pid=1, now=1.0
        )
    ).worker_id


def _status(db: Database, task_id: int) -> Status:
    return db.call(lambda c: task_ops.get_task(c, task_id)).status


def test_rules() -> None:
    assert from_dependencies([]) == Status.PENDING
    assert from_dependencies([Status.SUCCEEDED, Status.RUNNING]) == Status.WAITING
    assert from_dependencies([Status.PENDING, Status.CANCELLED]) == Status.CANCELLED


def _run_and_fail(db: Database, worker: int, task_id: int, now: float) -> TaskInfo:
    """Hand the task to the worker, which runs it and reports it failed with exit code 5."""
    assert task_id in [t.task_id for t in db.call(lambda c: worker_ops.ping(c, worker, now)).tasks]
    db.call(lambda c: task_ops.update_status(c, task_id, Status.RUNNING, now, worker_id=worker))
    return db.call(lambda c: task_ops.update_status(c, task_id, Status.FAILED, now + 1, exit_code=5, worker_id=worker))


def test_a_failed_attempt_runs_again_while_re_runs_are_left(db: Database) -> None:
    """The store applies `after_failed_attempt` to every F report: back to P while re-runs are left, then F."""
    assert after_failed_attempt(retry=2, failure_retries=1) == Status.PENDING
    assert after_failed_attempt(retry=2, failure_retries=2) == Status.FAILED
    once, thrice = db.call(lambda c: taskflow.insert_batch(c, [NewTask("once"), NewTask("thrice", retry=2)], 1.0))
    worker = _worker(db)
    for attempt, expected in enumerate([Status.PENDING, Status.PENDING, Status.FAILED], start=1):
        task = _run_and_fail(db, worker, thrice, now=2.0 * attempt)
        assert (task.status, task.attempts, task.exit_code) == (expected, attempt, 5)
        assert task.failure_retries == min(attempt, 2)
        if expected == Status.PENDING:
            assert task.reason == f"attempt {attempt} failed (exit code 5); re-run {attempt} of 2"
    # Without re-runs a failure is final at once.
    task = db.call(lambda c: task_ops.update_status(c, once, Status.FAILED, 9.0, exit_code=1, worker_id=worker))
    assert (task.status, task.attempts, task.failure_retries) == (Status.FAILED, 1, 0)


def test_a_report_after_cancel_changes_nothing_and_ends_the_kill(db: Database) -> None:
    [task_id] = db.call(lambda c: taskflow.insert_batch(c, [NewTask("sleep 9")], 1.0))
    worker = _worker(db)
    db.call(lambda c: worker_ops.ping(c, worker, 2.0))
    db.call(lambda c: task_ops.update_status(c, task_id, Status.RUNNING, 3.0, worker_id=worker))
    assert db.call(lambda c: taskflow.cancel(c, [task_id], 4.0)).ids == [task_id]
    assert db.call(lambda c: worker_ops.ping(c, worker, 5.0)).cancel_ids == [task_id]
    # The worker's late "running" and even "succeeded" (it finished before it heard) leave the task X.
    db.call(lambda c: task_ops.update_status(c, task_id, Status.RUNNING, 6.0, worker_id=worker))
    assert db.call(lambda c: worker_ops.ping(c, worker, 6.5)).cancel_ids == [task_id]  # not killed yet: still told
    db.call(lambda c: task_ops.update_status(c, task_id, Status.SUCCEEDED, 7.0, exit_code=0, worker_id=worker))
    assert _status(db, task_id) == Status.CANCELLED
    assert db.call(lambda c: worker_ops.ping(c, worker, 8.0)).cancel_ids == []
    # Another worker cannot report it at all.
    other = _worker(db)
    with pytest.raises(TransitionError):
        db.call(lambda c: task_ops.update_status(c, task_id, Status.FAILED, 9.0, worker_id=other))


def test_cancelled_tasks_being_killed_still_take_their_slots(db: Database) -> None:
    ids = db.call(lambda c: taskflow.insert_batch(c, [NewTask("a"), NewTask("b"), NewTask("c")], 1.0))
    worker = _worker(db, concurrency=1)
    assert [t.task_id for t in db.call(lambda c: worker_ops.ping(c, worker, 2.0)).tasks] == [ids[0]]
    db.call(lambda c: taskflow.cancel(c, [ids[0]], 3.0))
    assert db.call(lambda c: worker_ops.ping(c, worker, 4.0)).tasks == []  # its slot is busy until killed
    db.call(lambda c: task_ops.update_status(c, ids[0], Status.FAILED, 5.0, exit_code=-15, worker_id=worker))
    assert [t.task_id for t in db.call(lambda c: worker_ops.ping(c, worker, 6.0)).tasks] == [ids[1]]


def test_failure_cancels_a_chain_and_retry_revives_it(db: Database) -> None:
    ids = db.call(
        lambda c: taskflow.insert_batch(
            c, [NewTask("a"), NewTask("b", after_index=(0,)), NewTask("c", after_index=(1,))], 1.0
        )
    )
    worker = _worker(db)
    db.call(lambda c: worker_ops.ping(c, worker, 2.0))
    db.call(lambda c: task_ops.update_status(c, ids[0], Status.FAILED, 3.0, exit_code=1, worker_id=worker))
    tasks = db.call(lambda c: taskflow.list_tasks(c, frozenset(), task_ids=ids))
    assert [t.status for t in tasks] == [Status.FAILED, Status.CANCELLED, Status.CANCELLED]
    assert tasks[2].reason == f"dependency {ids[1]} was cancelled"
    changes = db.call(lambda c: taskflow.retry(c, [ids[0]], 4.0))
    assert changes.ids == ids
    assert [_status(db, t) for t in ids] == [Status.PENDING, Status.WAITING, Status.WAITING]
    db.call(lambda c: worker_ops.ping(c, worker, 5.0))
    db.call(lambda c: task_ops.update_status(c, ids[0], Status.RUNNING, 5.5, worker_id=worker))
    db.call(lambda c: task_ops.update_status(c, ids[0], Status.SUCCEEDED, 6.0, exit_code=0, worker_id=worker))
    assert [_status(db, t) for t in ids] == [Status.SUCCEEDED, Status.PENDING, Status.WAITING]


def test_retry_leaves_succeeded_and_unfinished_tasks_alone(db: Database) -> None:
    ids = db.call(lambda c: taskflow.insert_batch(c, [NewTask("a"), NewTask("b")], 1.0))
    assert db.call(lambda c: taskflow.retry(c, ids, 2.0)).ids == []
    with pytest.raises(InvalidArgument, match="no task 99"):
        db.call(lambda c: taskflow.select_ids(c, [99], "", frozenset()))


def test_slots_fit_oldest_first_and_skip_what_cannot_fit(db: Database) -> None:
    specs = [NewTask("big", slots=3), NewTask("huge", slots=8), NewTask("one"), NewTask("two", slots=2)]
    ids = db.call(lambda c: taskflow.insert_batch(c, specs, 1.0))
    worker = _worker(db, concurrency=4)
    given = [t.task_id for t in db.call(lambda c: worker_ops.ping(c, worker, 2.0)).tasks]
    assert given == [ids[0], ids[2]]  # 3 + 1 fill 4; the 8-slot task never goes to a 4-slot worker
    assert db.call(lambda c: taskflow.held_slots(c, worker)) == 4
    [huge] = db.call(lambda c: taskflow.list_tasks(c, frozenset(), task_ids=[ids[1]]))
    assert huge.reason == "needs 8 slots; largest live worker has 4"

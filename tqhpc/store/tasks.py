"""Task operations: each a function of a connection, run inside the writer's transaction (see database.py)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterable, Sequence, Set

from ..errors import FailedPrecondition, NotFound
from ..records import TaskInfo
from ..status import HELD, TERMINAL, Status, check_worker_transition
from . import taskflow, usage

_HELD_LETTERS = frozenset(s.value for s in HELD)
_HELD_SQL = "(" + ", ".join(f"'{letter}'" for letter in sorted(_HELD_LETTERS)) + ")"


def attempt_numbers(conn: sqlite3.Connection, task_ids: Sequence[int]) -> dict[int, int]:
    """The attempt each task is at (the one whose output and usage are the latest); unknown ids are left out."""
    return {task_id: attempts for task_id, attempts in taskflow.rows_by_id(conn, "task_id, attempts", task_ids)}


def get_task(conn: sqlite3.Connection, task_id: int) -> TaskInfo:
    row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return TaskInfo.from_row(row)


def holders(conn: sqlite3.Connection, task_ids: Iterable[int]) -> dict[int, int | None]:
    """For each existing task, the worker holding it (None when nobody does); unknown ids are left out."""
    return {
        task_id: worker_id if status in _HELD_LETTERS else None
        for task_id, worker_id, status in taskflow.rows_by_id(conn, "task_id, worker_id, status", task_ids)
    }


def update_status(
    conn: sqlite3.Connection,
    task_id: int,
    new: Status,
    now: float,
    *,
    exit_code: int | None = None,
    worker_id: int | None = None,
    reason: str = "",
    settled: list[int] | None = None,
    current: TaskInfo | None = None,
) -> TaskInfo:
    """Apply a worker's report. A repeat of the current status is accepted and changes nothing.

    Dependents that the report ends (cancelled because this task failed) are added to `settled`, so the server can
    wake whoever follows their logs. `current` is the task as the caller already read it in this transaction.

    A worker that skips R (scitq's reports A -> C -> S) ran the task somewhere between its C and its S or F report.
    The task's start is then the time of the C report: the run cannot have started earlier, so the wall time it
    gives (up to the end report, `now`) is an upper bound, where the end report's own time would claim a run of
    no length (only a task accepted before the server kept acceptance times gets that). A success reported without
    an exit code (the seed's message has none) has exit code 0, which is what success means.
    """
    task = current if current is not None else get_task(conn, task_id)
    if taskflow.acknowledge_kill(conn, task, worker_id, final=new in TERMINAL):
        return task  # cancelled while its worker held it; the worker's report changes nothing
    if worker_id is not None and task.status in HELD and task.worker_id != worker_id:
        raise FailedPrecondition(f"task {task_id} is held by worker {task.worker_id}, not by worker {worker_id}")
    if not check_worker_transition(task_id, task.status, new):
        return task
    if new == Status.RUNNING:
        conn.execute(
            "UPDATE tasks SET status = 'R', started_at = ?, ended_at = NULL, exit_code = NULL, failure = '' "
            "WHERE task_id = ?",
            (now, task_id),
        )
        # What the statement changed, without reading the row again: every running task reports R.
        return dataclasses.replace(
            task, status=Status.RUNNING, started_at=now, ended_at=None, exit_code=None, failure=""
        )
    if new == Status.FAILED and taskflow.rerun_after_failure(conn, task, exit_code, reason, now):
        pass  # re-runs left, back to P
    elif new in TERMINAL:
        if new == Status.SUCCEEDED and exit_code is None:
            exit_code = 0
        conn.execute(
            "UPDATE tasks SET started_at = CASE status WHEN 'C' THEN COALESCE(accepted_at, ?) ELSE started_at END, "
            "status = ?, ended_at = ?, exit_code = ?, reason = ? WHERE task_id = ?",
            (now, new.value, now, exit_code, reason, task_id),
        )
        ended = taskflow.settle_dependents(conn, task_id, new, now)
        if settled is not None:
            settled.extend(ended)
    else:  # C: accepted, perhaps waiting for a slot
        conn.execute("UPDATE tasks SET status = 'C', accepted_at = ? WHERE task_id = ?", (now, task_id))
    return get_task(conn, task_id)


def assigned_tasks(
    conn: sqlite3.Connection, worker_id: int, known: Set[tuple[int, int]] = frozenset()
) -> tuple[list[TaskInfo], set[tuple[int, int]]]:
    """The tasks assigned to the worker and not yet accepted, as (records of those not in `known`, the (task,
    attempt) of every one): a session's dispatch runs with each report, and most of what it finds was sent before."""
    rows = conn.execute("SELECT * FROM tasks WHERE worker_id = ? AND status = 'A' ORDER BY task_id", (worker_id,))
    new, assigned = [], set()
    for row in rows:
        key = (row["task_id"], row["attempts"])
        assigned.add(key)
        if key not in known:
            new.append(TaskInfo.from_row(row))
    return new, assigned


def assign_pending(
    conn: sqlite3.Connection,
    worker_id: int,
    room: int,
    largest: int | None = None,
    time_left: float | None = None,
    containers: bool | None = None,
) -> int:
    """Hand pending tasks, oldest first, to the worker while their slots fit in `room`; return how many.

    A task takes `slots` of the room, and one bigger than `largest` (the worker's concurrency) is never given to it
    (see taskflow.fitting_pending). Only tasks the worker can run are chosen: container tasks go to workers able to
    run containers, and a task with a declared run time only to a worker with at least `time_left` seconds of
    walltime (None: unbounded). `containers`: whether the worker can run them, when the caller has read it already.
    """
    if room <= 0:
        return 0
    if containers is None:
        containers = usage.can_run_containers(conn, worker_id)
    chosen = taskflow.fitting_pending(
        conn,
        room,
        room if largest is None else largest,
        bare_only=not containers,
        time_left=time_left,
    )
    if not chosen:
        return 0
    marks = ",".join("?" * len(chosen))
    cursor = conn.execute(
        "UPDATE tasks SET status = 'A', worker_id = ?, attempts = attempts + 1, reason = '' "
        f"WHERE task_id IN ({marks})",
        (worker_id, *chosen),
    )
    return cursor.rowcount


def requeue(
    conn: sqlite3.Connection, task_ids: Sequence[int], reason: str, cut: str = usage.CutShort.HANDED_BACK
) -> list[int]:
    """Send held tasks back to pending; ids not held by anyone are left alone. Return the ids requeued.

    The attempt of a task that was running ends here, cut short: its record says so, with `cut` as its failure
    kind and `reason` (usage.close_cut_attempts)."""
    usage.close_cut_attempts(conn, task_ids, time.time(), cut, reason)
    done = []
    for task_id in task_ids:
        cursor = conn.execute(
            f"UPDATE tasks SET status = 'P', worker_id = NULL, started_at = NULL, reason = ? "
            f"WHERE task_id = ? AND status IN {_HELD_SQL}",
            (reason, task_id),
        )
        if cursor.rowcount:
            done.append(task_id)
    return done


def held_task_ids(conn: sqlite3.Connection, worker_id: int) -> list[int]:
    rows = conn.execute(
        f"SELECT task_id FROM tasks WHERE worker_id = ? AND status IN {_HELD_SQL} ORDER BY task_id", (worker_id,)
    )
    return [row[0] for row in rows]

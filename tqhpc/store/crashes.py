"""The per-task crash counter: a task whose worker is lost while running it is not requeued forever.

HyperQueue's crash limit is the model: a task that keeps taking its worker down (it eats the node's memory, it
outlives every job's walltime) fails after `crash_limit` losses with a reason that says so, instead of looping.
This is the one place where the tasks of a lost worker go back to the queue, whether the reaper found the worker
silent, its local process exited, or its Slurm job ended outside tqhpc.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ..plural import plural
from ..status import Status
from . import taskflow, tasks, usage

DEFAULT_CRASH_LIMIT = 5
CRASH_LIMIT_FAILURE = "crash_limit"
"""The task's machine-readable failure kind (Task.failure) when it failed at the crash limit."""


def requeue_after_loss(
    conn: sqlite3.Connection, task_ids: Sequence[int], reason: str, crash_limit: int = DEFAULT_CRASH_LIMIT
) -> tuple[list[int], list[int]]:
    """Requeue a lost worker's tasks; those it was running count a crash, and fail at the limit.

    Return (requeued, failed). Tasks only assigned or accepted never ran, so they go back without a crash.
    A crash_limit of 0 means no limit.
    """
    marks = ",".join("?" * len(task_ids))
    running = [
        row[0]
        for row in conn.execute(f"SELECT task_id FROM tasks WHERE status = 'R' AND task_id IN ({marks})", task_ids)
    ] if task_ids else []  # fmt: skip
    failed = []
    for task_id in running:
        count = conn.execute(
            "UPDATE tasks SET crash_count = crash_count + 1 WHERE task_id = ? RETURNING crash_count", (task_id,)
        ).fetchone()[0]
        if crash_limit and count >= crash_limit:
            now = time.time()
            usage.close_cut_attempts(conn, [task_id], now, usage.CutShort.WORKER_LOST, reason)
            conn.execute(
                "UPDATE tasks SET status = 'F', ended_at = ?, exit_code = NULL, reason = ?, failure = ? "
                "WHERE task_id = ?",
                (
                    now,
                    f"crash limit reached: its worker was lost {plural(count, 'time')} while running it "
                    f"(last: {reason})",
                    CRASH_LIMIT_FAILURE,
                    task_id,
                ),
            )
            taskflow.settle_dependents(conn, task_id, Status.FAILED, now)  # its dependents can never run now
            failed.append(task_id)
    requeued = tasks.requeue(conn, [t for t in task_ids if t not in failed], reason, usage.CutShort.WORKER_LOST)
    return requeued, failed

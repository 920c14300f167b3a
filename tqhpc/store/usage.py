"""Store operations for limits and usage: per-task limits, per-attempt resource usage, and the workers' host state.

Usage is kept per attempt (`task_attempts`), so a task that ran twice shows what each attempt cost; the task record
shows its latest attempt. Every function here runs inside the writer's transaction, like those of tasks.py.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence

from ..records import ResourceUsage, TaskInfo, WorkerInfo, WorkerStats
from ..status import HELD, TERMINAL, Status
from . import taskflow

_USAGE_COLUMNS = tuple(f.name for f in dataclasses.fields(ResourceUsage) if f.name != "attempt")
_STATS_COLUMNS = tuple(f.name for f in dataclasses.fields(WorkerStats))


# --- per-attempt usage ----------------------------------------------------------------------------------------------


def record_update(
    conn: sqlite3.Connection,
    before: TaskInfo,
    task: TaskInfo,
    reported: Status,
    worker_id: int | None,
    usage: ResourceUsage | None,
    failure: str,
) -> None:
    """After a worker's status report was applied: keep its usage for the attempt it reported on, and the failure kind.

    Only the report of the worker that held the task counts (a late report of a worker that lost it does not). It is
    judged on the task as it was before the report, because the report may have moved it on: a failed attempt with
    re-runs left is back to P, and a task cancelled while running takes its worker's last report without changing.
    """
    if before.status not in HELD and before.status != Status.CANCELLED:
        return
    if worker_id is not None and before.worker_id != worker_id:
        return
    # A start clears the failure kind of an earlier attempt in its own update (tasks.update_status).
    if reported in TERMINAL and task.status != Status.CANCELLED:
        conn.execute("UPDATE tasks SET failure = ? WHERE task_id = ?", (failure, task.task_id))
    if usage is None:
        return
    values = usage.to_dict()
    values["failure"] = usage.failure or failure
    values["final"] = int(values["final"])
    conn.execute(_RECORD_ATTEMPT, (task.task_id, before.attempts, *(values[c] for c in _USAGE_COLUMNS)))


_RECORD_ATTEMPT = (
    f"INSERT INTO task_attempts (task_id, attempt, {', '.join(_USAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_USAGE_COLUMNS) + 2))}) "
    f"ON CONFLICT (task_id, attempt) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _USAGE_COLUMNS)}"
)
"""An attempt's usage record, new or replacing the one its earlier report made (built once: it is on every report)."""


class CutShort:
    """The failure kinds of an attempt that ended without its worker's final report (ResourceUsage.failure)."""

    WORKER_LOST = "worker_lost"  # the worker stopped pinging, its process exited, or its Slurm job ended
    WORKER_DELETED = "worker_deleted"  # DeleteWorker stopped the worker while it ran the task
    HANDED_BACK = "handed_back"  # the worker gave the task back unfinished (killed at its stop)


def close_cut_attempts(
    conn: sqlite3.Connection, task_ids: Sequence[int], now: float, failure: str, reason: str
) -> None:
    """End the attempt records of the running tasks among `task_ids`, which end here without a final report.

    Left alone, such a record would keep its worker's first sample (a wall time of a few milliseconds and no end)
    and say nothing of what happened. What the server knows is written instead: the attempt ended now, it lasted
    from its start until now, it has no exit code, and `failure` and `reason` say why. The measured figures (CPU,
    memory) stay as last sampled, lower bounds. Call it before the tasks leave `R`.
    """
    if not task_ids:
        return
    marks = ",".join("?" * len(task_ids))
    running = conn.execute(
        "SELECT t.task_id, t.attempts, t.worker_id, t.started_at, w.name, w.hostname, w.slurm_job_id "
        "FROM tasks t LEFT JOIN workers w ON w.worker_id = t.worker_id "
        f"WHERE t.status = 'R' AND t.task_id IN ({marks})",
        tuple(task_ids),
    ).fetchall()
    for task_id, attempt, worker_id, task_started, worker_name, hostname, job in running:
        # A record exists once the worker reported R with its first figures; a seed worker sends none.
        conn.execute(
            "INSERT INTO task_attempts (task_id, attempt, worker_id, worker_name, hostname, slurm_job_id, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id, attempt) DO NOTHING",
            (task_id, attempt, worker_id, worker_name or "", hostname or "", job or "", task_started or now),
        )
        conn.execute(
            "UPDATE task_attempts SET ended_at = ?, wall_time = MAX(0, ? - started_at), exit_code = NULL, final = 1, "
            "failure = ?, reason = ? WHERE task_id = ? AND attempt = ?",
            (now, now, failure, reason, task_id, attempt),
        )


def attempts_of(conn: sqlite3.Connection, task_id: int) -> list[ResourceUsage]:
    rows = conn.execute("SELECT * FROM task_attempts WHERE task_id = ? ORDER BY attempt", (task_id,))
    return [ResourceUsage.from_row(row) for row in rows]


def latest_attempts(conn: sqlite3.Connection, task_ids: Sequence[int]) -> dict[int, sqlite3.Row]:
    """The latest attempt's row of each of these tasks (sorted ids) that has one.

    The attempts of a page of a listing are read by one range over the primary key, those of scattered tasks by
    chunked key lookups: either way the cost follows the tasks asked for, not the size of the table.
    """
    latest: dict[int, sqlite3.Row] = {}
    sql = "SELECT * FROM task_attempts WHERE {ids} ORDER BY task_id, attempt"
    for row in taskflow.select_by_ids(conn, sql, task_ids):
        latest[row["task_id"]] = row  # ordered by attempt: the last one stays
    return latest


def with_latest_usage(conn: sqlite3.Connection, tasks: Sequence[TaskInfo]) -> list[TaskInfo]:
    """The tasks with their latest attempt's usage attached."""
    latest = latest_attempts(conn, sorted({t.task_id for t in tasks}))
    return [t.copy_with(usage=ResourceUsage.from_row(latest[t.task_id])) if t.task_id in latest else t for t in tasks]


def with_all_usage(conn: sqlite3.Connection, task: TaskInfo) -> TaskInfo:
    attempts = attempts_of(conn, task.task_id)
    return dataclasses.replace(task, usage=attempts[-1] if attempts else None, attempt_usage=tuple(attempts))


# --- workers --------------------------------------------------------------------------------------------------------


def set_container_capability(conn: sqlite3.Connection, worker_id: int, capable: bool | None, note: str) -> None:
    conn.execute(
        "UPDATE workers SET container_capable = ?, container_note = ? WHERE worker_id = ?",
        (None if capable is None else int(capable), note, worker_id),
    )


def store_stats(conn: sqlite3.Connection, worker_id: int, stats: WorkerStats) -> None:
    """Keep only the latest state: one row per worker, replaced at every ping."""
    values = stats.to_dict()
    columns = ", ".join(_STATS_COLUMNS)
    marks = ", ".join("?" * (len(_STATS_COLUMNS) + 1))
    conn.execute(
        f"INSERT OR REPLACE INTO worker_host_stats (worker_id, {columns}) VALUES ({marks})",
        (worker_id, *(values[c] for c in _STATS_COLUMNS)),
    )


def with_stats(conn: sqlite3.Connection, workers: Sequence[WorkerInfo]) -> list[WorkerInfo]:
    if not workers:
        return []
    rows = conn.execute("SELECT * FROM worker_host_stats")
    stats = {row["worker_id"]: WorkerStats.from_row(row) for row in rows}
    return [dataclasses.replace(w, stats=stats[w.worker_id]) if w.worker_id in stats else w for w in workers]


# --- scheduling -----------------------------------------------------------------------------------------------------


def can_run_containers(conn: sqlite3.Connection, worker_id: int) -> bool:
    """Whether container tasks may go to this worker: one that registered as unable to run them gets only bare
    tasks, so container tasks stay pending for one that can (unknown counts as able)."""
    row = conn.execute("SELECT container_capable FROM workers WHERE worker_id = ?", (worker_id,)).fetchone()
    return row is None or row[0] != 0

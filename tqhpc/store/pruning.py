"""Removing ended tasks, so that a queue used for months does not keep every task it ever ran.

Only ended tasks (S, F, X) go, with their usage records and dependency links. A task that an unfinished task still
depends on stays: its dependent waits for its status, and would wait forever for a task that is gone. A cancelled
task whose worker has not confirmed the kill stays too, since that worker will still report on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

PRUNE_BATCH = 500
"""Tasks removed per statement: bounded, so that one prune of a million tasks does not hold the writer for long."""


def prunable(conn: sqlite3.Connection, ended_before: float, name: str, statuses: Iterable[str]) -> list[int]:
    """Ended tasks (of these statuses, and this name if one is given) that ended before `ended_before`."""
    letters = sorted(set(statuses))
    marks = ",".join("?" * len(letters))
    query = (
        f"SELECT task_id FROM tasks INDEXED BY tasks_ended WHERE status IN ({marks}) AND ended_at < ? "
        "AND status IN ('S', 'F', 'X') AND kill_pending = 0 "
        "AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks t ON t.task_id = d.task_id "
        "WHERE d.dep_id = tasks.task_id AND t.status NOT IN ('S', 'F', 'X'))"
    )
    values: list[object] = [*letters, ended_before]
    if name:
        query += " AND name = ?"
        values.append(name)
    return [row[0] for row in conn.execute(query + " ORDER BY task_id", values)]


def remove(conn: sqlite3.Connection, task_ids: list[int]) -> dict[int, int]:
    """Delete these tasks and what hangs on them; return each one's attempts (to find its output files)."""
    attempts: dict[int, int] = {}
    for start in range(0, len(task_ids), PRUNE_BATCH):
        batch = task_ids[start : start + PRUNE_BATCH]
        marks = ",".join("?" * len(batch))
        attempts.update(conn.execute(f"SELECT task_id, attempts FROM tasks WHERE task_id IN ({marks})", batch))
        conn.execute(f"DELETE FROM task_attempts WHERE task_id IN ({marks})", batch)
        conn.execute(f"DELETE FROM task_deps WHERE task_id IN ({marks}) OR dep_id IN ({marks})", batch + batch)
        conn.execute(f"DELETE FROM tasks WHERE task_id IN ({marks})", batch)
    return attempts


__all__ = ["prunable", "remove"]

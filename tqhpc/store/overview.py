"""What `tqhpc top` shows of the queue, read from indexes so that it costs the same with a million tasks as with ten.

Each query here names the index it relies on (see the last migration in schema.py); tests/test_overview.py checks
with EXPLAIN QUERY PLAN that SQLite uses them, since a plan that falls back to reading the table would be correct
and only slow, once a second, for as long as someone watches.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..records import TaskInfo

RATE_WINDOWS = (10.0, 60.0)
"""Seconds back over which ended tasks are counted: the rate now, and the rate over the last minute."""


@dataclass(frozen=True)
class QueueOverview:
    counts: dict[str, int]
    ended: tuple[int, ...]  # one count per RATE_WINDOWS entry
    failures: list[TaskInfo]  # the latest failed tasks, most recent first


_NAMED = "name != ''"
"""The condition of tasks_by_name_status, which holds named tasks only: said in each query so SQLite may use it."""


def counts_by_status(conn: sqlite3.Connection, name: str = "") -> dict[str, int]:
    """Tasks by status letter (a covering index scan: tasks_by_status, or tasks_by_name_status for one name)."""
    if name:
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM tasks INDEXED BY tasks_by_name_status "
            f"WHERE name = ? AND {_NAMED} GROUP BY status",
            (name,),
        )
    else:
        rows = conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status")
    return {status: count for status, count in rows}


def ended_since(conn: sqlite3.Connection, since: float, name: str = "") -> int:
    """How many tasks ended (S, F, X) at `since` or later: a range of tasks_ended (or tasks_by_name_status), as
    long as the tasks that ended in the window, whatever the queue's length."""
    if name:
        row = conn.execute(
            "SELECT COUNT(*) FROM tasks INDEXED BY tasks_by_name_status "
            f"WHERE name = ? AND {_NAMED} AND status IN ('S', 'F', 'X') AND ended_at >= ?",
            (name, since),
        ).fetchone()
    else:
        # Named: without statistics SQLite would rather walk tasks_by_status over every ended task.
        row = conn.execute(
            "SELECT COUNT(*) FROM tasks INDEXED BY tasks_ended WHERE status IN ('S', 'F', 'X') AND ended_at >= ?",
            (since,),
        ).fetchone()
    return row[0]


def latest_failures(conn: sqlite3.Connection, limit: int, name: str = "") -> list[TaskInfo]:
    """The `limit` failed tasks that ended last, most recent first (tasks_failed, or tasks_by_name_status)."""
    if name:
        rows = conn.execute(
            f"SELECT * FROM tasks INDEXED BY tasks_by_name_status WHERE name = ? AND {_NAMED} AND status = 'F' "
            "ORDER BY ended_at DESC LIMIT ?",
            (name, limit),
        )
    else:
        rows = conn.execute(
            "SELECT * FROM tasks INDEXED BY tasks_failed WHERE status = 'F' ORDER BY ended_at DESC LIMIT ?", (limit,)
        )
    return TaskInfo.from_rows(rows.fetchall())


def read(conn: sqlite3.Connection, now: float, failures: int, name: str = "") -> QueueOverview:
    """The whole overview of the tasks (of one name); call it inside one snapshot so that the parts agree."""
    return QueueOverview(
        counts_by_status(conn, name),
        tuple(ended_since(conn, now - window, name) for window in RATE_WINDOWS),
        latest_failures(conn, failures, name) if failures else [],
    )

"""The Slurm job behind each Slurm worker, as the provider and the reconciliation loop see it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..records import WorkerState

_LIVE = tuple(sorted(WorkerState.LIVE))


@dataclass(frozen=True)
class SlurmWorker:
    worker_id: int
    job_id: str
    job_state: str
    pool: str
    state: str  # the worker's own state (starting, running, draining, ...)


def set_pool(conn: sqlite3.Connection, worker_ids: list[int], pool: str) -> None:
    conn.executemany("UPDATE workers SET slurm_pool = ? WHERE worker_id = ?", [(pool, w) for w in worker_ids])


def set_job(conn: sqlite3.Connection, worker_id: int, job_id: str, job_state: str) -> None:
    conn.execute(
        "UPDATE workers SET slurm_job_id = ?, slurm_job_state = ? WHERE worker_id = ?", (job_id, job_state, worker_id)
    )


def set_job_states(conn: sqlite3.Connection, states: dict[int, str]) -> None:
    conn.executemany("UPDATE workers SET slurm_job_state = ? WHERE worker_id = ?", [(s, w) for w, s in states.items()])


def job_of(conn: sqlite3.Connection, worker_id: int) -> str:
    row = conn.execute("SELECT slurm_job_id FROM workers WHERE worker_id = ?", (worker_id,)).fetchone()
    return row[0] if row else ""


def live_slurm_workers(conn: sqlite3.Connection) -> list[SlurmWorker]:
    """Live workers with a Slurm job, the ones the reconciliation loop watches."""
    rows = conn.execute(
        "SELECT worker_id, slurm_job_id, slurm_job_state, slurm_pool, state FROM workers "
        f"WHERE slurm_job_id != '' AND state IN ({','.join('?' * len(_LIVE))}) ORDER BY worker_id",
        _LIVE,
    )
    return [SlurmWorker(*row) for row in rows]


def pending_task_count(conn: sqlite3.Connection, slots: int | None = None, task_time: float | None = None) -> int:
    """Pending tasks, or only those a worker with `slots` of concurrency and `task_time` seconds could take: a
    pool must not submit jobs for tasks none of its workers could run (they would start, idle and leave)."""
    if slots is None or task_time is None:
        return conn.execute("SELECT COUNT(*) FROM tasks WHERE status = 'P'").fetchone()[0]
    return conn.execute(
        "SELECT COUNT(*) FROM tasks WHERE status = 'P' AND slots <= ? AND (time_request = 0 OR time_request <= ?)",
        (slots, task_time),
    ).fetchone()[0]


def live_pool_counts(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """For each pool: (live workers, of which still waiting in Slurm: created but not registered)."""
    rows = conn.execute(
        "SELECT slurm_pool, COUNT(*), SUM(state = ?) FROM workers "
        f"WHERE slurm_pool != '' AND state IN ({','.join('?' * len(_LIVE))}) GROUP BY slurm_pool",
        (WorkerState.STARTING, *_LIVE),
    )
    return {row[0]: (row[1], row[2] or 0) for row in rows}

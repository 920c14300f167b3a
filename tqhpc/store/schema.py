"""The database schema, as an ordered list of migrations recorded in `schema_migrations`.

A server opening an older database applies the missing steps in one transaction; one opening a newer database than
it knows refuses to start rather than write into a schema it does not understand.
"""

from __future__ import annotations

import sqlite3
import time

MIGRATIONS: list[str] = [
    # 1: tasks, workers and the indexes that the scheduler's hot queries use.
    """
    CREATE TABLE workers (
        worker_id   INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT    NOT NULL,
        concurrency INTEGER NOT NULL,
        prefetch    INTEGER NOT NULL DEFAULT 0,
        state       TEXT    NOT NULL,
        provider    TEXT    NOT NULL DEFAULT '',
        hostname    TEXT    NOT NULL DEFAULT '',
        pid         INTEGER,
        created_at  REAL    NOT NULL,
        last_ping   REAL
    );
    CREATE TABLE tasks (
        task_id      INTEGER PRIMARY KEY AUTOINCREMENT,
        command      TEXT    NOT NULL,
        container    TEXT    NOT NULL DEFAULT '',
        status       TEXT    NOT NULL,
        worker_id    INTEGER REFERENCES workers(worker_id),
        exit_code    INTEGER,
        attempts     INTEGER NOT NULL DEFAULT 0,
        submitted_at REAL    NOT NULL,
        started_at   REAL,
        ended_at     REAL,
        reason       TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX tasks_by_status ON tasks(status, task_id);
    CREATE INDEX tasks_by_worker ON tasks(worker_id, status);
    CREATE INDEX workers_by_state ON workers(state);
    """,
    # Names, retries after failure, dependencies (status W), slots, array ids, kills owed to workers.
    """
    ALTER TABLE tasks ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN retry INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN failure_retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN slots INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE tasks ADD COLUMN array_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN kill_pending INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE task_deps (
        task_id INTEGER NOT NULL REFERENCES tasks(task_id),
        dep_id  INTEGER NOT NULL REFERENCES tasks(task_id),
        PRIMARY KEY (task_id, dep_id)
    ) WITHOUT ROWID;
    CREATE INDEX task_deps_by_dep ON task_deps(dep_id);
    CREATE INDEX tasks_by_name ON tasks(name, task_id);
    CREATE INDEX tasks_kill_pending ON tasks(worker_id) WHERE kill_pending = 1;
    """,
    # Per-task limits and failure kind, per-attempt resource usage, container capability and host state.
    """
    ALTER TABLE tasks ADD COLUMN timeout REAL NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN memory_limit INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN failure TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN container_capable INTEGER;
    ALTER TABLE workers ADD COLUMN container_note TEXT NOT NULL DEFAULT '';
    CREATE TABLE task_attempts (
        task_id      INTEGER NOT NULL REFERENCES tasks(task_id),
        attempt      INTEGER NOT NULL,
        worker_id    INTEGER,
        worker_name  TEXT    NOT NULL DEFAULT '',
        hostname     TEXT    NOT NULL DEFAULT '',
        slurm_job_id TEXT    NOT NULL DEFAULT '',
        started_at   REAL    NOT NULL DEFAULT 0,
        ended_at     REAL    NOT NULL DEFAULT 0,
        wall_time    REAL    NOT NULL DEFAULT 0,
        cpu_user     REAL    NOT NULL DEFAULT 0,
        cpu_system   REAL    NOT NULL DEFAULT 0,
        peak_rss     INTEGER NOT NULL DEFAULT 0,
        last_rss     INTEGER NOT NULL DEFAULT 0,
        read_bytes   INTEGER NOT NULL DEFAULT 0,
        write_bytes  INTEGER NOT NULL DEFAULT 0,
        exit_code    INTEGER,
        samples      INTEGER NOT NULL DEFAULT 0,
        final        INTEGER NOT NULL DEFAULT 0,
        failure      TEXT    NOT NULL DEFAULT '',
        PRIMARY KEY (task_id, attempt)
    );
    CREATE TABLE worker_host_stats (
        worker_id        INTEGER PRIMARY KEY REFERENCES workers(worker_id),
        cpu_percent      REAL    NOT NULL DEFAULT 0,
        load1            REAL    NOT NULL DEFAULT 0,
        load5            REAL    NOT NULL DEFAULT 0,
        load15           REAL    NOT NULL DEFAULT 0,
        memory_used      INTEGER NOT NULL DEFAULT 0,
        memory_available INTEGER NOT NULL DEFAULT 0,
        disk_free        INTEGER NOT NULL DEFAULT 0,
        running_tasks    INTEGER NOT NULL DEFAULT 0,
        sampled_at       REAL    NOT NULL DEFAULT 0
    );
    """,
    # Slurm jobs behind workers, walltime ends, declared task run times and the per-task crash counter.
    """
    ALTER TABLE workers ADD COLUMN slurm_job_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN slurm_job_state TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN slurm_pool TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN walltime_end REAL;
    ALTER TABLE tasks ADD COLUMN time_request REAL NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN crash_count INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX workers_by_slurm_pool ON workers(slurm_pool, state);
    """,
    # When the worker accepted the task (C): the earliest its run can have started, for workers that never report R.
    """
    ALTER TABLE tasks ADD COLUMN accepted_at REAL;
    """,
    # Why an attempt ended when its worker never sent the final report (lost, deleted, or the task handed back).
    """
    ALTER TABLE task_attempts ADD COLUMN reason TEXT NOT NULL DEFAULT '';
    """,
    # The directory each task runs in (where it was submitted); '' for tasks that run in a scratch directory.
    """
    ALTER TABLE tasks ADD COLUMN cwd TEXT NOT NULL DEFAULT '';
    """,
    # Dispatch without scanning the queue: pending tasks by size, oldest first, all of them and the bare ones (for
    # workers that cannot run containers). Only pending tasks are in them, so they stay as small as the queue.
    """
    CREATE INDEX tasks_pending ON tasks(slots, task_id) WHERE status = 'P';
    CREATE INDEX tasks_pending_bare ON tasks(slots, task_id) WHERE status = 'P' AND container = '';
    """,
    # The last report of each worker's session stream that was applied: a report resent after a reconnect is skipped.
    """
    ALTER TABLE workers ADD COLUMN last_report INTEGER NOT NULL DEFAULT 0;
    """,
    # Ended tasks by when they ended, for pruning them without reading the whole table.
    """
    CREATE INDEX tasks_ended ON tasks(ended_at) WHERE status IN ('S', 'F', 'X');
    """,
    # The overview of a queue of millions from indexes alone: counts by status, recent ends and the latest failures
    # of one name, and the latest failures of all (failed tasks only, so it stays as small as the failures). Only
    # named tasks are in the first: an index moves at every status change, and unnamed tasks are never asked by name.
    """
    CREATE INDEX tasks_by_name_status ON tasks(name, status, ended_at) WHERE name != '';
    CREATE INDEX tasks_failed ON tasks(ended_at) WHERE status = 'F';
    """,
]


class SchemaError(RuntimeError):
    pass


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; return the version now in force."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)
        if version > len(MIGRATIONS):
            raise SchemaError(
                f"the database has schema version {version}, newer than this tqhpc knows ({len(MIGRATIONS)}): "
                "a newer tqhpc wrote it; run that one, or upgrade tqhpc"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)

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
    # issue 4: Slurm jobs behind workers, walltime ends, declared task run times and the per-task crash counter.
    """
    ALTER TABLE workers ADD COLUMN slurm_job_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN slurm_job_state TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN slurm_pool TEXT NOT NULL DEFAULT '';
    ALTER TABLE workers ADD COLUMN walltime_end REAL;
    ALTER TABLE tasks ADD COLUMN time_request REAL NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN crash_count INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX workers_by_slurm_pool ON workers(slurm_pool, state);
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
                f"the database has schema version {version}, newer than this tqhpc knows ({len(MIGRATIONS)}); "
                "upgrade tqhpc"
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

"""Plain rows as the server and the clients see them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..status import Status


@dataclass(frozen=True)
class TaskRecord:
    task_id: int
    command: str
    container: str
    status: Status
    worker_id: int | None
    exit_code: int | None
    attempts: int
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    reason: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TaskRecord:
        return cls(
            task_id=row["task_id"],
            command=row["command"],
            container=row["container"],
            status=Status(row["status"]),
            worker_id=row["worker_id"],
            exit_code=row["exit_code"],
            attempts=row["attempts"],
            submitted_at=row["submitted_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            reason=row["reason"],
        )


class WorkerState:
    STARTING = "starting"  # created by CreateWorker, not registered yet
    RUNNING = "running"
    DRAINING = "draining"  # heartbeat only, takes no new task
    LOST = "lost"  # stopped pinging; its tasks went back to pending
    DELETED = "deleted"  # stopped by DeleteWorker
    STOPPED = "stopped"  # left by itself after draining

    LIVE = frozenset({STARTING, RUNNING, DRAINING})


@dataclass(frozen=True)
class WorkerRecord:
    worker_id: int
    name: str
    concurrency: int
    prefetch: int
    state: str
    provider: str
    hostname: str
    pid: int | None
    created_at: float
    last_ping: float | None
    running: int = 0
    held: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> WorkerRecord:
        keys = row.keys()
        return cls(
            worker_id=row["worker_id"],
            name=row["name"],
            concurrency=row["concurrency"],
            prefetch=row["prefetch"],
            state=row["state"],
            provider=row["provider"],
            hostname=row["hostname"],
            pid=row["pid"],
            created_at=row["created_at"],
            last_ping=row["last_ping"],
            running=row["running"] if "running" in keys else 0,
            held=row["held"] if "held" in keys else 0,
        )

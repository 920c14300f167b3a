"""Tasks and workers as plain values: one definition read from SQLite rows by the store, turned into wire
messages by the server, and read back from them by the client, so the three can never drift apart."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from typing import Any, Self

from google.protobuf.message import Message

from ._proto import pb
from .status import Status


class WorkerState:
    STARTING = "starting"  # created by CreateWorker, not registered yet
    RUNNING = "running"
    DRAINING = "draining"  # heartbeat only, takes no new task
    LOST = "lost"  # stopped pinging; its tasks went back to pending
    DELETED = "deleted"  # stopped by DeleteWorker
    STOPPED = "stopped"  # left by itself after draining

    LIVE = frozenset({STARTING, RUNNING, DRAINING})


class _Record:
    """Conversions shared by the records: from a row, from and to a message, to JSON-ready dicts."""

    message_type: type[Message]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Self:
        names = set(row.keys())
        values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in names}  # type: ignore[arg-type]
        return cls(**_typed(values))

    @classmethod
    def from_message(cls, message: Message) -> Self:
        fields = message.DESCRIPTOR.fields_by_name
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in fields:
                absent = fields[f.name].has_presence and not message.HasField(f.name)
                values[f.name] = None if absent else getattr(message, f.name)
        return cls(**_typed(values))

    def to_message(self) -> Any:
        fields = self.message_type.DESCRIPTOR.fields_by_name
        values = {name: value for name, value in self.to_dict().items() if name in fields and value is not None}
        return self.message_type(**values)

    def to_dict(self) -> dict[str, Any]:
        # Flat fields only, so no deep copy (asdict) on the hot path of every ping and listing.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {name: value.value if isinstance(value, Status) else value for name, value in values.items()}


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    if "status" in values:
        values["status"] = Status(values["status"])
    return values


@dataclass(frozen=True)
class TaskInfo(_Record):
    message_type = pb.Task

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
    time_request: float = 0.0  # issue 4
    crash_count: int = 0  # issue 4

    @property
    def wall_time(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class WorkerInfo(_Record):
    message_type = pb.Worker

    worker_id: int
    name: str
    concurrency: int
    prefetch: int
    state: str
    provider: str
    hostname: str
    last_ping: float | None
    running: int = 0
    held: int = 0
    pid: int | None = None
    created_at: float | None = None
    slurm_job_id: str = ""  # issue 4
    slurm_job_state: str = ""
    slurm_pool: str = ""
    walltime_end: float | None = None

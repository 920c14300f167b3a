"""Tasks and workers as plain values: one definition read from SQLite rows by the store, turned into wire
messages by the server, and read back from them by the client, so the three can never drift apart."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from typing import Any, ClassVar, Self

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
    nested: ClassVar[dict[str, type[_Record]]] = {}
    """Fields holding another record (a sub-message on the wire); a store attaches them after reading the row."""
    repeated: ClassVar[dict[str, type[_Record]]] = {}
    """Fields holding a tuple of records (a repeated sub-message)."""

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
            if f.name in cls.repeated:
                values[f.name] = tuple(cls.repeated[f.name].from_message(m) for m in getattr(message, f.name))
            elif f.name in fields:
                absent = fields[f.name].has_presence and not message.HasField(f.name)
                value = None if absent else getattr(message, f.name)
                if f.name in cls.nested and value is not None:
                    value = cls.nested[f.name].from_message(value)
                values[f.name] = value
        return cls(**_typed(values))

    def to_message(self) -> Any:
        fields = self.message_type.DESCRIPTOR.fields_by_name
        values = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name not in fields or value is None:
                continue
            if isinstance(value, _Record):
                value = value.to_message()
            elif f.name in self.repeated:
                value = [item.to_message() for item in value]
            elif isinstance(value, Status):
                value = value.value
            values[f.name] = value
        return self.message_type(**values)

    def to_dict(self) -> dict[str, Any]:
        # Flat fields only, so no deep copy (asdict) on the hot path of every ping and listing.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {name: _plain(value) for name, value in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Status):
        return value.value
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    if "status" in values:
        values["status"] = Status(values["status"])
    if "after" in values:
        values["after"] = tuple(values["after"] or ())
    if values.get("container_capable") is not None:
        values["container_capable"] = bool(values["container_capable"])  # SQLite keeps it as 0 or 1
    return values


@dataclass(frozen=True)
class ResourceUsage(_Record):
    """What one attempt of a task cost, and where and when it ran (issue 3)."""

    message_type = pb.ResourceUsage

    attempt: int = 0
    worker_id: int = 0
    worker_name: str = ""
    hostname: str = ""
    slurm_job_id: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    wall_time: float = 0.0
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    peak_rss: int = 0
    last_rss: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    exit_code: int | None = None
    samples: int = 0
    final: bool = False
    failure: str = ""
    reason: str = ""  # how an attempt ended that its worker never reported the end of

    @property
    def cpu_time(self) -> float:
        return self.cpu_user + self.cpu_system


@dataclass(frozen=True)
class WorkerStats(_Record):
    """A worker's host at its latest ping (issue 3)."""

    message_type = pb.WorkerStats

    cpu_percent: float = 0.0
    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0
    memory_used: int = 0
    memory_available: int = 0
    disk_free: int = 0
    running_tasks: int = 0
    sampled_at: float = 0.0


@dataclass(frozen=True)
class TaskInfo(_Record):
    message_type = pb.Task
    nested = {"usage": ResourceUsage}
    repeated = {"attempt_usage": ResourceUsage}

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
    # issue 5: sweeps, retries, dependencies, slots.
    name: str = ""
    retry: int = 0
    failure_retries: int = 0
    after: tuple[int, ...] = ()
    slots: int = 1
    array_id: str = ""
    # issue 3
    timeout: float = 0.0
    memory_limit: int = 0
    failure: str = ""
    usage: ResourceUsage | None = None
    attempt_usage: tuple[ResourceUsage, ...] = ()
    time_request: float = 0.0  # issue 4
    crash_count: int = 0  # issue 4
    cwd: str = ""  # where the task runs; "": a scratch directory per attempt

    @property
    def wall_time(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class WorkerInfo(_Record):
    message_type = pb.Worker
    nested = {"stats": WorkerStats}

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
    # issue 3
    stats: WorkerStats | None = None
    container_capable: bool | None = None
    container_note: str = ""
    slurm_job_id: str = ""  # issue 4
    slurm_job_state: str = ""
    slurm_pool: str = ""
    walltime_end: float | None = None

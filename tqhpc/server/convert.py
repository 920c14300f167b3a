"""Store records to wire messages."""

from __future__ import annotations

from .._proto import pb
from ..store import TaskRecord, WorkerRecord


def task_message(task: TaskRecord) -> pb.Task:
    message = pb.Task(
        task_id=task.task_id,
        command=task.command,
        container=task.container,
        status=task.status.value,
        attempts=task.attempts,
        submitted_at=task.submitted_at,
        reason=task.reason,
    )
    if task.exit_code is not None:
        message.exit_code = task.exit_code
    if task.worker_id is not None:
        message.worker_id = task.worker_id
    if task.started_at is not None:
        message.started_at = task.started_at
    if task.ended_at is not None:
        message.ended_at = task.ended_at
    return message


def worker_message(worker: WorkerRecord) -> pb.Worker:
    message = pb.Worker(
        worker_id=worker.worker_id,
        name=worker.name,
        concurrency=worker.concurrency,
        prefetch=worker.prefetch,
        state=worker.state,
        provider=worker.provider,
        hostname=worker.hostname,
        running=worker.running,
        held=worker.held,
    )
    if worker.last_ping is not None:
        message.last_ping = worker.last_ping
    return message

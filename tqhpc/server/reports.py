"""A session worker's report applied in one store operation: statuses in order, released tasks, its heartbeat.

Output is appended to the logs before this runs (see the service), so a terminal status never stands before the
output it promises. An update the store refuses (the task is no longer this worker's, or the change is impossible)
is rolled back alone and named in the acknowledgement; the rest of the report stands.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

from .._proto import pb
from ..errors import TqhpcError
from ..records import ResourceUsage, TaskInfo, WorkerStats
from ..status import Status, parse_status
from ..store import tasks as task_ops
from ..store import usage as usage_ops
from ..store import workers as worker_ops
from ..store.changes import Changes
from . import validate


@dataclass
class Applied(Changes):
    """What one report changed, for the consequences the service draws after the store operation, and the updates
    refused, for the acknowledgement."""

    refused: dict[int, str] = field(default_factory=dict)


def apply_status(conn: sqlite3.Connection, request: pb.TaskStatusUpdate, settled: list[int]) -> tuple[TaskInfo, Status]:
    """One status report, as UpdateTaskStatus and a session report take it: the task after it, the status asked."""
    new = parse_status(request.new_status)
    exit_code = request.exit_code if request.HasField("exit_code") else None
    worker_id = request.worker_id if request.HasField("worker_id") else None
    usage = validate.storable(ResourceUsage.from_message(request.usage), "usage") if request.HasField("usage") else None
    failure = validate.name(request.failure, "failure")
    before = task_ops.get_task(conn, request.task_id)
    task = task_ops.update_status(
        conn,
        request.task_id,
        new,
        time.time(),
        exit_code=exit_code,
        worker_id=worker_id,
        reason=request.reason,
        settled=settled,
        current=before,
    )
    usage_ops.record_update(conn, before, task, new, worker_id, usage, failure)  # resource usage of the attempt
    return task, new


def apply_report(conn: sqlite3.Connection, worker_id: int, report: pb.WorkerReport) -> Applied:
    """Apply every part of `report` of `worker_id` and record it as applied, in the caller's one transaction."""
    applied = Applied()
    for update in report.updates:
        update.worker_id = worker_id  # a worker reports for itself only
        conn.execute("SAVEPOINT report_update")
        try:
            task, new = apply_status(conn, update, applied.finished)
        except TqhpcError as err:
            conn.execute("ROLLBACK TO report_update")
            applied.refused[update.task_id] = str(err)
        else:
            applied.status_reported(task, new)
        conn.execute("RELEASE report_update")
    if report.released_task_ids:
        reason = report.release_reason or f"handed back by worker {worker_id}"
        applied.requeued += worker_ops.release(conn, worker_id, list(report.released_task_ids), reason)
        applied.for_workers = True
    if report.HasField("stats"):
        usage_ops.store_stats(conn, worker_id, validate.storable(WorkerStats.from_message(report.stats), "stats"))
    worker_ops.heartbeat(conn, worker_id, time.time(), report.sequence)
    return applied


def only_heartbeat(report: pb.WorkerReport) -> bool:
    """Nothing in the report but the sign of life: no task news, no output, no change of the host's state."""
    return not (report.updates or report.logs or report.released_task_ids or report.HasField("stats"))


def ack(sequence: int, refused: dict[int, str], push: pb.TaskPush | None = None) -> pb.ServerMessage:
    message = pb.ReportAck(sequence=sequence)
    for task_id, reason in refused.items():
        message.refused_task_ids.append(task_id)
        message.refused_reasons.append(reason)
    if push is not None:
        message.push.CopyFrom(push)
    return pb.ServerMessage(ack=message)


__all__ = ["Applied", "ack", "apply_report", "apply_status", "only_heartbeat"]

"""What a store operation changed that the rest of the server must act on.

Operations return it; the service draws every consequence from it in one place (`TaskQueueService._follow_up`):
followers of finished tasks are woken, requeued tasks' output is moved aside before any worker hears of them, and
the session pushers look again when a worker may have something new to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import TaskInfo
from ..status import Status


@dataclass
class Changes:
    ids: list[int] = field(default_factory=list)  # the tasks the operation acted on, for the caller's answer
    finished: list[int] = field(default_factory=list)  # terminal now: whoever follows their output is woken
    requeued: list[int] = field(default_factory=list)  # back to the queue for a new attempt: their output moves aside
    for_workers: bool = False  # pending work, free room, cancels or a concurrency changed: every pusher looks again
    attempts: dict[int, int] = field(default_factory=dict)  # the attempt each requeued task ended, read with it

    def status_reported(self, task: TaskInfo, new: Status) -> None:
        """Count in what one status report did to its task (`task` as it is after the report of `new`)."""
        if task.status.terminal:
            self.finished.append(task.task_id)
        elif new.terminal and task.status == Status.PENDING:
            self.requeued.append(task.task_id)  # a failed attempt to be re-run
        if new.terminal:
            self.for_workers = True  # room freed, dependents perhaps released


__all__ = ["Changes"]

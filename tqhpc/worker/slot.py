"""A task the worker holds, from acceptance to its end: its state, the moves allowed between states, and what its
runner says became of it.

Reports, cancels, the server's refusals and stop signals all reach a task while it runs, in any order. Each of
them asks for a move, and only a move the table below allows happens: a task already handed back is never also
reported done, a task reported done is never handed back, and a cancel that comes too late changes nothing.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path

from .._proto import pb
from .process import Outcome, TaskProcess


class TaskState(enum.Enum):
    ACCEPTED = "accepted"  # held, waiting for room; not started
    RUNNING = "running"  # its runner started it
    CANCELLED = "cancelled"  # cancelled by the user while running: being killed, its F report ends the kill
    REPORTED = "reported"  # its final S or F is on its way: it ended before any stop came
    HANDED_BACK = "handed back"  # the worker is stopping: back to the queue, not to F
    HIT = "hit"  # running when Slurm signalled every process of the job: its end is not trusted, it goes back
    DISOWNED = "disowned"  # the server no longer counts it as ours: killed, nothing more reported


_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.ACCEPTED: frozenset(
        {TaskState.RUNNING, TaskState.REPORTED, TaskState.HANDED_BACK, TaskState.DISOWNED}
    ),  # reported: cancelled before it started
    TaskState.RUNNING: frozenset(
        {TaskState.CANCELLED, TaskState.REPORTED, TaskState.HANDED_BACK, TaskState.HIT, TaskState.DISOWNED}
    ),
    TaskState.CANCELLED: frozenset({TaskState.REPORTED, TaskState.HANDED_BACK, TaskState.HIT, TaskState.DISOWNED}),
    TaskState.HIT: frozenset({TaskState.HANDED_BACK, TaskState.DISOWNED}),
    TaskState.REPORTED: frozenset({TaskState.DISOWNED}),  # the server refused the report
    TaskState.HANDED_BACK: frozenset({TaskState.DISOWNED}),  # the worker was disowned while handing it back
    TaskState.DISOWNED: frozenset(),
}
"""Every move a task's state may make; anything else is a request that came too late, and is ignored."""

STARTED = frozenset({TaskState.RUNNING, TaskState.CANCELLED})
"""A task whose own end still decides what is reported."""


@dataclass
class Slot:
    task: pb.Task
    state: TaskState = TaskState.ACCEPTED
    process: TaskProcess | None = None
    runner: asyncio.Task[None] | None = None  # set when it starts; it counts against the concurrency till it ends
    scratch: Path | None = None  # the attempt's own directory, when the task names none; removed at the end
    running_report: asyncio.Future[bool] | None = None  # the server's answer to R, which the task does not wait for

    @property
    def size(self) -> int:
        """How much of the concurrency the task takes."""
        return self.task.slots or 1

    @property
    def task_id(self) -> int:
        return self.task.task_id

    def move(self, to: TaskState) -> bool:
        """Move to `to` if the table allows it from here; say whether it moved."""
        if to not in _MOVES[self.state]:
            return False
        self.state = to
        return True


class Fate(enum.Enum):
    """What became of a task, as its runner saw it: what the worker does with it next."""

    REPORT = "report"  # its end is the task's own: report S or F
    HAND_BACK = "hand back"  # a stop signal of the batch system ended it while the worker stops: back to the queue
    SETTLED = "settled"  # someone else deals with it (disowned, killed for the stop, hit by the job's end)


@dataclass(frozen=True)
class Ending:
    fate: Fate
    outcome: Outcome | None = None  # for REPORT
    reason: str = ""  # for HAND_BACK

    @classmethod
    def report(cls, outcome: Outcome) -> Ending:
        return cls(Fate.REPORT, outcome)


SETTLED = Ending(Fate.SETTLED)

__all__ = ["SETTLED", "STARTED", "Ending", "Fate", "Slot", "TaskState"]

"""The worker's task states: only the moves the table allows happen, whatever order reports, cancels, refusals
and stop signals reach a task in."""

from __future__ import annotations

from tqhpc._proto import pb
from tqhpc.worker.slot import Slot, TaskState


def _slot_in(*path: TaskState) -> Slot:
    slot = Slot(pb.Task(task_id=1))
    for state in path:
        assert slot.move(state), f"{slot.state} -> {state}"
    return slot


def test_a_task_reported_done_is_never_handed_back_hit_or_cancelled() -> None:
    slot = _slot_in(TaskState.RUNNING, TaskState.REPORTED)
    for late in (TaskState.HANDED_BACK, TaskState.HIT, TaskState.CANCELLED, TaskState.RUNNING):
        assert not slot.move(late)
    assert slot.state is TaskState.REPORTED
    assert slot.move(TaskState.DISOWNED)  # the server may still refuse the report


def test_a_task_hit_by_the_jobs_end_is_never_reported_but_handed_back() -> None:
    slot = _slot_in(TaskState.RUNNING, TaskState.CANCELLED, TaskState.HIT)
    assert not slot.move(TaskState.REPORTED)
    assert slot.move(TaskState.HANDED_BACK)
    assert not slot.move(TaskState.REPORTED) and not slot.move(TaskState.HIT)


def test_a_disowned_task_stays_disowned_and_a_cancel_comes_once() -> None:
    slot = _slot_in(TaskState.RUNNING, TaskState.CANCELLED)
    assert not slot.move(TaskState.CANCELLED)  # a repeated cancel does not kill it again
    assert slot.move(TaskState.DISOWNED)
    assert not any(slot.move(state) for state in TaskState)


def test_only_a_task_not_started_is_started() -> None:
    slot = _slot_in(TaskState.RUNNING)
    assert not slot.move(TaskState.RUNNING)
    assert not _slot_in(TaskState.HANDED_BACK).move(TaskState.RUNNING)

"""Pushes and reports cross on the wire: a stale dispatch is never sent, and a worker never reruns an attempt."""

from __future__ import annotations

import asyncio

from tqhpc.records import TaskInfo
from tqhpc.server.pushing import Pusher
from tqhpc.status import Status
from tqhpc.store.workers import Dispatch
from tqhpc.worker.agent import RecentAttempts


def _assigned(*task_ids: int, attempt: int = 1) -> list[TaskInfo]:
    return [
        TaskInfo(task_id, "true", "", Status.ASSIGNED, 1, None, attempt, 0.0, None, None, "") for task_id in task_ids
    ]


def _dispatch(tasks: list[TaskInfo]) -> Dispatch:
    return Dispatch(tasks, {(task.task_id, task.attempts) for task in tasks}, 2, 2, [])


def test_a_dispatch_read_before_one_already_offered_is_dropped() -> None:
    async def scenario() -> list[int]:
        outbox: asyncio.Queue = asyncio.Queue()
        pusher = Pusher(1, run=None, outbox=outbox)  # type: ignore[arg-type]  # offer() never runs the store
        stale = _dispatch(_assigned(7))  # read while task 7 was still assigned
        fresh = _dispatch(_assigned())  # read after task 7 started (and perhaps ended)
        pusher.offer(fresh)
        pusher.offer(stale)
        pusher.offer(_dispatch(_assigned(8)))
        pushed = []
        while not outbox.empty():
            pushed += [task.task_id for task in outbox.get_nowait().push.tasks]
        return pushed

    assert asyncio.run(scenario()) == [8]  # task 7 is not sent again


def test_a_task_assigned_again_for_its_next_attempt_is_pushed_again() -> None:
    """R and F of a task with retries in one report: it fails, goes back and is assigned again in that one store
    operation, so no dispatch in between saw it leave; its second attempt must still be sent."""

    async def scenario() -> list[tuple[int, int]]:
        outbox: asyncio.Queue = asyncio.Queue()
        pusher = Pusher(1, run=None, outbox=outbox)  # type: ignore[arg-type]
        pusher.offer(_dispatch(_assigned(7, attempt=1)))
        pusher.offer(_dispatch(_assigned(7, attempt=2)))
        pushed = []
        while not outbox.empty():
            pushed += [(task.task_id, task.attempts) for task in outbox.get_nowait().push.tasks]
        return pushed

    assert asyncio.run(scenario()) == [(7, 1), (7, 2)]


def test_recent_attempts_remember_the_latest_and_forget_the_oldest() -> None:
    recent = RecentAttempts(size=2)
    for attempt in [(1, 1), (2, 1), (1, 1), (3, 1)]:
        recent.add(attempt)
    assert (1, 1) not in recent and (2, 1) in recent and (3, 1) in recent
    assert (2, 2) not in recent  # the same task requeued is a new attempt, to run

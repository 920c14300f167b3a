"""Push dispatch: a session worker is sent work the moment it is pending and the worker has room.

Each open session has a `Pusher`. Anything that may give a worker work or news (a submission, a requeue, a finished
task freeing room or releasing dependents, a cancel, a concurrency change) kicks the pushers; each runs one
dispatch at a time and runs again if it was kicked meanwhile, so a burst of kicks costs one or two store trips, not
one per kick. A push carries only what this session has not sent yet; a new session starts from nothing, so tasks
assigned but not accepted before a reconnect are sent again (the worker ignores ids it already holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable

import grpc

from .._proto import pb
from ..errors import TqhpcError
from ..store import workers as worker_ops

log = logging.getLogger("tqhpc.server")

Refusal = tuple[grpc.StatusCode, str]
Outgoing = pb.ServerMessage | Refusal
RunInStore = Callable[[Callable[..., worker_ops.Dispatch]], Awaitable[worker_ops.Dispatch]]


class Pusher:
    """The dispatch loop of one session; what it decides to send goes into `outbox`."""

    def __init__(self, worker_id: int, run: RunInStore, outbox: asyncio.Queue[Outgoing]) -> None:
        self.worker_id = worker_id
        self._run = run
        self._outbox = outbox
        self._kicked = asyncio.Event()
        self._sent_tasks: frozenset[tuple[int, int]] = frozenset()  # (task, attempt)
        self._sent_cancels: set[int] = set()
        self._sent_sizes: tuple[int, int] | None = None
        self._latest = 0  # the newest dispatch offered: an older one, offered late, would resend what is gone
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.kick()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kick(self) -> None:
        self._kicked.set()

    async def _loop(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked.clear()
            try:
                found = await self._run(self._dispatch)
            except TqhpcError as err:  # the worker is no longer live: its session ends
                self._outbox.put_nowait((err.code, str(err)))
                return
            except Exception:
                log.exception("dispatch to worker %d failed; trying again at the next change", self.worker_id)
                continue
            self.offer(found)

    def offer(self, found: worker_ops.Dispatch) -> None:
        """Send what of this loop's dispatch is news to the worker, as a push of its own."""
        push = self.news(found)
        if push is not None:
            self._outbox.put_nowait(pb.ServerMessage(push=push))

    def news(self, found: worker_ops.Dispatch) -> pb.TaskPush | None:
        """What of a dispatch (this loop's, or one run with a report of the worker) is news to the worker, marked
        as sent (None: nothing).

        Dispatches read in the store's order but can reach here out of it (this loop's against a report's); a
        reading older than one already offered may list a task as assigned that has since started and ended,
        so it is dropped: a newer one is on its way or already sent."""
        if found.taken < self._latest:
            return None
        self._latest = found.taken
        return self._news(found)

    def _dispatch(self, conn: sqlite3.Connection) -> worker_ops.Dispatch:
        return worker_ops.dispatch(conn, self.worker_id, time.time(), self.sent)

    @property
    def sent(self) -> frozenset[tuple[int, int]]:
        """The assigned tasks (task, attempt) this session has sent; a dispatch need not read them again."""
        return self._sent_tasks

    def _news(self, found: worker_ops.Dispatch) -> pb.TaskPush | None:
        """What of `found` this session has not sent yet (None: nothing)."""
        push = pb.TaskPush()
        # By attempt: a task that failed and was assigned again within one report's operation is news again,
        # though it never left this worker's assigned list between two dispatches.
        push.tasks.extend(
            task.to_message() for task in found.tasks if (task.task_id, task.attempts) not in self._sent_tasks
        )
        # Accepted ones leave A; one requeued and assigned again is news again.
        self._sent_tasks = frozenset(found.assigned)
        cancels = [task_id for task_id in found.cancel_ids if task_id not in self._sent_cancels]
        push.cancel_task_ids.extend(cancels)
        self._sent_cancels = set(found.cancel_ids)
        sizes = (found.concurrency, found.prefetch)
        if sizes != self._sent_sizes:
            push.concurrency, push.prefetch = sizes
            self._sent_sizes = sizes
        if not push.tasks and not push.cancel_task_ids and not push.HasField("concurrency"):
            return None
        return push


class Pushers:
    """Every open session's pusher, so that a change anywhere kicks them all."""

    def __init__(self) -> None:
        self._all: set[Pusher] = set()

    def add(self, pusher: Pusher) -> None:
        self._all.add(pusher)
        pusher.start()

    async def remove(self, pusher: Pusher) -> None:
        self._all.discard(pusher)
        await pusher.stop()

    def kick_all(self, *, but: Pusher | None = None) -> None:
        for pusher in self._all:
            if pusher is not but:
                pusher.kick()


__all__ = ["Pusher", "Pushers", "Refusal"]

"""What the worker tells the server, batched on its session stream: statuses, output, host state, heartbeats.

Everything that happened since the last report goes in one WorkerReport: the server applies it in one store
operation, output first, so a terminal status and its task's remaining output arrive together. One report is in
flight at a time; what accumulates meanwhile goes in the next. A report counts as done only when the server
acknowledged it: until then it is kept, and sent again (same sequence number, which the server applies only once)
when the session is reopened after a break or a server restart.

Each output chunk says where it starts in its attempt's stream (counted here from 0 at the attempt's first status),
so a report the server stored the output of but not the rest (it died in between) is resent without doubling that
output. Tasks handed back ride the reports too, after their output and statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .._proto import pb

log = logging.getLogger("tqhpc.worker")

MAX_MESSAGE_DATA = 1 << 20
"""The most output bytes one log message carries; a larger chunk is cut, so no message nears gRPC's size cap."""

START_COALESCE_SECONDS = 0.02
"""How long a report of tasks that only started waits for more (a short task's end goes with its start)."""
HIGH_WATER_BYTES = 8 * 1024 * 1024
"""Output waiting beyond this slows the task that writes it (its pipe fills) until a report takes it."""

_ATTEMPT_BEGINS = frozenset({"C", "R"})  # the first status of an attempt: accepted, or started at once
_ATTEMPT_ENDS = frozenset({"S", "F"})
_LOG_TYPES = ("O", "E")


@dataclass
class _Report:
    message: pb.WorkerReport
    waiting: list[tuple[int, asyncio.Future[bool]]] = field(default_factory=list)  # (task id or 0, its answer)


class Reporter:
    """Batches the worker's reports onto its session; `send` puts a message on the open stream (False: none open)."""

    def __init__(
        self,
        send: Callable[[pb.WorkerMessage], bool],
        stats: Callable[[], pb.WorkerStats | None],
        log_interval: float,
        heartbeat_interval: float,
    ) -> None:
        self._send = send
        self._stats = stats
        self.log_interval = log_interval
        self.own_heartbeat = self.heartbeat_interval = heartbeat_interval
        self.worker_id: int | None = None
        self._updates: list[tuple[pb.TaskStatusUpdate, asyncio.Future[bool]]] = []
        self._logs: list[_Output] = []
        self._written: dict[tuple[int, str], int] = {}  # bytes of each running attempt's streams so far
        self._attempts: set[int] = set()  # tasks whose attempt has begun here and not ended
        self._releases: list[tuple[list[int], str, asyncio.Future[bool]]] = []
        self._log_bytes = 0
        self._barriers: list[asyncio.Future[bool]] = []
        self._sequence = 0
        self._unacked: dict[int, _Report] = {}
        self._wake = asyncio.Event()  # something to send, an acknowledgement, or the session (re)opened
        self._last_sent = 0.0
        self._open = False
        self._task: asyncio.Task[None] | None = None

    # --- what the worker calls ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the sending loop. Cancelled again until it ends: `asyncio.wait_for` (before Python 3.12) can swallow
        a cancellation that lands as its timeout fires, which is what a worker woken after a freeze meets."""
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)

    def submit(self, update: pb.TaskStatusUpdate) -> asyncio.Future[bool]:
        """Queue a status now, in order; the future says True once the server applied it, False when it refused it
        (or the worker gave up on it)."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if update.new_status in _ATTEMPT_BEGINS and update.task_id not in self._attempts:
            self._end_attempts([update.task_id])
            self._attempts.add(update.task_id)
        self._updates.append((update, answer))
        if update.new_status in _ATTEMPT_ENDS:
            self._end_attempts([update.task_id])
        self._wake.set()
        return answer

    def release(self, task_ids: list[int], reason: str) -> asyncio.Future[bool]:
        """Hand these tasks back to the queue with the next report, after everything queued before; the future
        says True once the server applied it."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._releases.append((list(task_ids), reason, answer))
        self._end_attempts(task_ids)
        self._wake.set()
        return answer

    async def add(self, task_id: int, log_type: str, data: bytes) -> None:
        """A task's output; it leaves with the next report (at the latest after the log interval)."""
        offset = self._written.get((task_id, log_type), 0)
        self._written[(task_id, log_type)] = offset + len(data)
        self._logs.append(_Output(task_id, log_type, data, offset))
        self._log_bytes += len(data)
        self._wake.set()
        if self._log_bytes >= HIGH_WATER_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Return once everything added so far has been acknowledged by the server."""
        if not self._logs and not self._updates and not self._releases and not self._unacked:
            return
        barrier: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._barriers.append(barrier)
        self._wake.set()
        await barrier

    def abandon(self) -> None:
        """The worker lost its tasks (disowned, or starting over as a new worker): nothing waiting is sent."""
        waiting = [answer for _, answer in self._updates] + self._barriers
        waiting += [answer for _, _, answer in self._releases]
        for report in self._unacked.values():
            waiting += [answer for _, answer in report.waiting]
        for answer in waiting:
            if not answer.done():
                answer.set_result(False)
        self._updates, self._logs, self._log_bytes, self._barriers, self._releases = [], [], 0, [], []
        self._written.clear()
        self._attempts.clear()
        self._unacked.clear()
        self._wake.set()

    # --- what the session calls --------------------------------------------------------------------------------

    def opened(self, welcome: pb.SessionWelcome) -> None:
        """The session was (re)opened: send again, in order, every report not acknowledged; heartbeat as often as
        the server asks, if that is more often than ours."""
        self._open = True
        asked = welcome.heartbeat_seconds
        self.heartbeat_interval = min(self.own_heartbeat, asked) if asked > 0 else self.own_heartbeat
        for report in self._unacked.values():
            self._send(pb.WorkerMessage(report=report.message))
        self._wake.set()

    def closed(self) -> None:
        self._open = False

    def acknowledged(self, ack: pb.ReportAck) -> None:
        report = self._unacked.pop(ack.sequence, None)
        if report is None:
            return
        refused = dict(zip(ack.refused_task_ids, ack.refused_reasons, strict=False))
        for task_id, reason in refused.items():
            log.warning("task %d: the server refused our report: %s", task_id, reason)
        self._end_attempts(refused)  # the task is not ours: its attempt is over here
        for task_id, answer in report.waiting:
            if not answer.done():
                answer.set_result(task_id not in refused)
        self._wake.set()

    # --- the sending loop --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._turn()
            except Exception:
                log.exception("sending a report failed; trying again")
                await asyncio.sleep(self.heartbeat_interval)

    async def _turn(self) -> None:
        """Wait for something to report (or the heartbeat's time) and for the report in flight, then send."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.heartbeat_interval)
        self._wake.clear()
        if self._unacked or not self._open:  # one report in flight; none while the session is closed
            return
        pending = self._updates or self._logs or self._barriers or self._releases
        if not pending and self._loop_time() - self._last_sent < self.heartbeat_interval:
            return
        if self._updates or self._releases:
            # A status leaves at once: what else is ready in this turn of the loop joins it, and whatever happens
            # while it is in flight goes in the next report. Waiting here would hold the server's next push back,
            # but for tasks that only started: they free no room, and a short one's end then goes with its start.
            await asyncio.sleep(0)
            await self._while_only_starts()
        elif self._logs and not self._barriers and self._log_bytes < HIGH_WATER_BYTES // 8:
            await asyncio.sleep(self.log_interval)  # pure output may wait, unless a status comes meanwhile
        self._send_pending()

    async def _while_only_starts(self) -> None:
        """Wait up to START_COALESCE_SECONDS while everything to report is tasks starting (R)."""
        deadline = self._loop_time() + START_COALESCE_SECONDS
        while not self._barriers and not self._releases and all(u.new_status == "R" for u, _ in self._updates):
            left = deadline - self._loop_time()
            if left <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _end_attempts(self, task_ids: Iterable[int]) -> None:
        """These tasks' attempts are over here: the next attempt's streams count from 0."""
        for task_id in task_ids:
            self._attempts.discard(task_id)
            for log_type in _LOG_TYPES:
                self._written.pop((task_id, log_type), None)

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    def _send_pending(self) -> None:
        """Everything waiting, in one report; with nothing waiting, a heartbeat (the host's state)."""
        self._sequence += 1
        message = pb.WorkerReport(sequence=self._sequence)
        report = _Report(message)
        message.logs.extend(_messages(self._logs, self.worker_id))
        for update, answer in self._updates:
            message.updates.append(update)
            report.waiting.append((update.task_id, answer))
        report.waiting += [(0, barrier) for barrier in self._barriers]
        self._updates, self._logs, self._log_bytes, self._barriers = [], [], 0, []
        if self._releases:  # one reason per report: releases given another reason go in the next one
            reason = self._releases[0][1]
            message.release_reason = reason
            for task_ids, _, answer in (r for r in self._releases if r[1] == reason):
                message.released_task_ids.extend(task_ids)
                report.waiting.append((0, answer))
            self._releases = [r for r in self._releases if r[1] != reason]
        stats = self._stats()
        if stats is not None:
            message.stats.CopyFrom(stats)
        self._unacked[self._sequence] = report
        self._last_sent = self._loop_time()
        self._send(pb.WorkerMessage(report=message))


@dataclass(frozen=True)
class _Output:
    task_id: int
    log_type: str
    data: bytes
    offset: int  # where `data` starts in the attempt's stream


def _messages(batch: list[_Output], worker_id: int | None) -> list[pb.TaskLog]:
    """Consecutive chunks of one task and stream merged, cut into messages of at most MAX_MESSAGE_DATA."""
    merged: list[tuple[int, str, int, bytearray]] = []
    for out in batch:
        last = merged[-1] if merged else None
        if last is not None and (last[0], last[1], last[2] + len(last[3])) == (out.task_id, out.log_type, out.offset):
            last[3].extend(out.data)
        else:
            merged.append((out.task_id, out.log_type, out.offset, bytearray(out.data)))
    messages = []
    for task_id, log_type, offset, data in merged:
        for start in range(0, len(data), MAX_MESSAGE_DATA):
            piece = bytes(data[start : start + MAX_MESSAGE_DATA])
            message = pb.TaskLog(task_id=task_id, log_type=log_type, worker_id=worker_id, offset=offset + start)
            try:
                message.log_text = piece.decode()
            except UnicodeDecodeError:
                message.log_bytes = piece
            messages.append(message)
    return messages


__all__ = ["Reporter"]

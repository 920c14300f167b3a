"""`tqhpc worker`: register, ping, run tasks with at most `concurrency` running and `prefetch` more accepted.

Life cycle: register (or take up the id CreateWorker reserved) and open the session stream -> heartbeat loop that
also takes new work -> on SIGTERM/SIGINT drain: hand back tasks not started, let running ones finish within the grace
period, kill and hand back the rest, then leave and say goodbye on the session. A second signal skips the grace
period. If the server says this worker was deleted, every task is killed at once (the server has already given them
to others). A worker that dies without its goodbye is seen by the server at once, through its session's end.

Inside a Slurm job, SIGTERM is different: scancel and the job's time limit send it to every process of the job,
the tasks' processes too. A task's `sleep` dies, its shell goes on and exits 0, so how a running task then ends
says nothing about the task. Such tasks are killed at once and handed back to the queue, never reported done;
SIGINT still drains gently there (`scancel --batch --signal=INT JOB` reaches a worker the script `exec`s, alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from .._proto import pb
from ..access import Access
from ..config import ApptainerSettings, WorkerSettings
from ..records import ResourceUsage, WorkerState
from ..status import Status
from .connection import Connection
from .containers import ContainerSupport
from .hoststats import HostStats
from .process import KILL_ESCALATION_SECONDS, Failure, Limits, Outcome, TaskProcess
from .reporter import Reporter
from .retry import ServerGone
from .session import SERVER_FAILED, Session
from .slot import SETTLED, STARTED, Ending, Fate, Slot, TaskState
from .taskdirs import DirectoryChecks, ScratchSpace
from .usage import attempt_start, placed
from .walltime import Walltime

log = logging.getLogger("tqhpc.worker")

GIVE_UP_AFTER_SECONDS = 600.0
"""How long the worker keeps trying to reach a server that does not answer before it stops."""
GIVE_UP_WHILE_STOPPING_SECONDS = 30.0
"""The same while stopping: a worker told to stop should not linger an hour for a server that is gone."""
JOB_END_KILL_GRACE_SECONDS = 2.0
"""When the Slurm job is being stopped: how long a hit task gets between our SIGTERM and SIGKILL, so that it is
gone and handed back well within Slurm's KillWait (30 s by default), before Slurm's own SIGKILL takes the worker."""
ACCEPTED_REPORT_DELAY = 0.05
"""How long a task accepted beyond the free slots waits before the worker reports it C (see `_accept`)."""
NOTE_BYTES = 200
"""The server takes notes of at most 256 bytes."""
REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})


def default_concurrency() -> int:
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    return len(os.sched_getaffinity(0))


def default_name() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{socket.gethostname()}-{'job' + job if job else os.getpid()}"


@dataclass
class Summary:
    succeeded: int = 0
    failed: int = 0
    handed_back: int = 0
    killed_on_stop: int = 0
    disowned: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Launch:
    """How a prepared task is started: where, with which environment, and the argv when it is not `sh -c`."""

    workdir: Path
    env: dict[str, str]
    argv: list[str] | None = None


class RecentAttempts:
    """The (task, attempt) pairs this worker ran lately. A push can repeat a task the worker has just run and
    reported, when the two crossed on the wire; running that attempt again would run the task twice."""

    def __init__(self, size: int = 4096) -> None:
        self._order: deque[tuple[int, int]] = deque()
        self._members: set[tuple[int, int]] = set()
        self._size = size

    def add(self, attempt: tuple[int, int]) -> None:
        if attempt in self._members:
            return
        self._order.append(attempt)
        self._members.add(attempt)
        if len(self._order) > self._size:
            self._members.discard(self._order.popleft())

    def __contains__(self, attempt: object) -> bool:
        return attempt in self._members


class WorkerStopped(Exception):
    """The server disowned this worker (deleted or declared lost); the message says which."""


class Worker:
    def __init__(
        self,
        access: Access,
        settings: WorkerSettings,
        *,
        access_file: Path | None = None,
        name: str | None = None,
        worker_id: int | None = None,
        give_up_after: float = GIVE_UP_AFTER_SECONDS,
        apptainer: ApptainerSettings | None = None,
    ) -> None:
        self.access = access
        self.access_file = access_file
        self.settings = settings
        self.name = name or default_name()
        self.reserved_id = worker_id
        self._pings_failing = False  # the server failed the last ping: the next failure is not said again
        self.worker_id = 0
        self.concurrency = settings.concurrency or default_concurrency()
        self.prefetch = settings.prefetch
        self.give_up_after = give_up_after
        self.slots: dict[int, Slot] = {}
        self.ready: deque[int] = deque()
        self.finished = RecentAttempts()
        self.summary = Summary()
        self._wake = asyncio.Event()
        self._pushes: list[pb.TaskPush] = []
        self._settling: set[asyncio.Future[bool]] = set()  # answers to C reports the worker does not wait for
        self._draining = False
        self._hurry = asyncio.Event()
        self.slurm_job = os.environ.get("SLURM_JOB_ID", "")
        self.environment = dict(os.environ)  # what tasks inherit; os.environ decodes every entry on each copy
        self._job_ending = False  # SIGTERM inside a Slurm job: Slurm is stopping the whole job, our tasks too
        self.walltime = Walltime.from_environment(settings.walltime_margin)
        self._stop_reason = ""  # why the worker drains by itself (walltime, idle), for the handed-back tasks
        self._idle_since = time.monotonic()
        self._fencing: asyncio.Task[None] | None = None  # killing and handing back tasks while cut off
        scratch = settings.scratch_dir or os.environ.get("TMPDIR") or "/tmp"
        self.scratch_root = Path(scratch) / f"tqhpc-{os.getuid()}"
        self.scratch = ScratchSpace(self.scratch_root)
        self.directories = DirectoryChecks()
        self.containers = ContainerSupport(apptainer or ApptainerSettings(), self.scratch_root)
        self.host_stats = HostStats(self.scratch_root)

    # --- life cycle --------------------------------------------------------------------------------------------

    async def run(self) -> int:
        self.connection = Connection(self.access, self.access_file, self.give_up_after)
        self.session = Session(self.connection, on_refused=self._wake.set, on_push=self._pushed)
        self.reporter = Reporter(
            self.session.send, self._stats, self.settings.log_flush_interval, self.settings.heartbeat_interval
        )
        self.session.listener = self.reporter
        watchdog: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        try:
            await self._register()
            self.reporter.start()
            watchdog = asyncio.create_task(self._watch_for_silence())
            await self._work_until_stopped()
            await self._drain()
            await self.session.close(f"worker {self.worker_id} stopped")
            return 0
        except WorkerStopped as err:
            log.warning("%s", err)
            killed = list(self.slots)
            await self._kill_all()
            await self._confirm_killed(killed, str(err))
            await self.session.close(str(err))
            return 0
        except ServerGone as err:
            log.error("%s; stopping and killing %d tasks", err, len(self.slots))
            await self._kill_all()
            return 1
        except grpc.aio.AioRpcError as err:  # refused outright: a wrong token, a reserved id already taken
            log.error("the server refused this worker (%s): %s", err.code().name, err.details())
            await self._kill_all()
            return 1
        except Exception:
            log.exception("the worker failed; killing %d tasks (the server will requeue them)", len(self.slots))
            await self._kill_all()
            return 1
        finally:
            if watchdog is not None:
                watchdog.cancel()
            # Without a goodbye, the server takes us as gone and requeues what we held: our tasks are dead by now.
            self.session.abort()
            with contextlib.suppress(Exception):
                await self.containers.stop()
            with contextlib.suppress(Exception):
                self.scratch.remove_all()
            with contextlib.suppress(Exception):
                await self.reporter.close()
            await self.connection.close()
            self._report_summary()

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        if signum == signal.SIGTERM and self.slurm_job:
            if not self._job_ending:
                self._stop_for_job_end()
            return  # a repeat (the time limit may send it twice) changes nothing: the tasks are being killed
        if self._draining:
            log.warning("second stop signal: killing running tasks now, not waiting for an absent server")
            self._hurry.set()
            self.connection.give_up_after = 0
        else:
            self.connection.give_up_after = min(self.give_up_after, GIVE_UP_WHILE_STOPPING_SECONDS)
        self._draining = True
        self._wake.set()

    def _stop_for_job_end(self) -> None:
        """Slurm sent SIGTERM to every process of this job: each running task got it too, so none may end `S` now.

        It runs in the event loop as soon as the loop sees the signal. Every task running then is marked: whether
        it ends by the signal or as if untouched, its runner reports nothing, and `_drain` kills it and hands it
        back. `_finish` gives the loop the chance to see a signal that arrived just before it reports.
        """
        self._job_ending = True
        hit = self._mark_hit()
        log.warning(
            "SIGTERM in Slurm job %s (scancel or its time limit; Slurm signals every process of the job): "
            "killing the %d running tasks and handing them back", self.slurm_job, len(hit),
        )  # fmt: skip
        self.connection.give_up_after = min(self.give_up_after, GIVE_UP_WHILE_STOPPING_SECONDS)
        self._draining = True
        self._hurry.set()
        self._wake.set()

    async def _register(self) -> None:
        available = self.containers.availability or await self.containers.start(self.scratch_root, f"{os.getpid()}")
        info = pb.WorkerInfo(
            name=self.name,
            concurrency=self.concurrency,
            prefetch=self.prefetch,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            container_capable=available.capable,
            container_note="" if available.capable else available.note[:NOTE_BYTES],
        )
        if self.reserved_id:
            info.worker_id = self.reserved_id
        if self.walltime.stop_at is not None:
            info.walltime_end = self.walltime.stop_at
        reply = await self._call("RegisterWorker", info, "registering")
        self.worker_id = self.reporter.worker_id = reply.worker_id
        await asyncio.to_thread(self.scratch.register, self.worker_id)
        self.session.start(self.worker_id)
        log.info(
            "worker %d (%s) registered with %s: concurrency %d, prefetch %d",
            self.worker_id, self.name, self.connection.access.address, self.concurrency, self.prefetch,
        )  # fmt: skip

    async def _call(self, method: str, request: Any, what: str) -> Any:
        return await self.connection.call(method, request, what)

    # --- the heartbeat loop ------------------------------------------------------------------------------------

    async def _work_until_stopped(self) -> None:
        """Work; if the server declared us lost (a long network cut, a frozen node), start over as a new worker."""
        while True:
            try:
                await self._work()
                return
            except WorkerStopped as err:
                if self._draining or await self._my_state() != WorkerState.LOST:
                    raise
                log.warning("%s; killing our copies of its tasks and registering again", err)
                await self._kill_all()
                self.reserved_id = None
                await self._register()

    async def _my_state(self) -> str:
        """Our state as the server records it; retired workers are asked for, since "lost" is the one we look for."""
        request = pb.ListWorkersRequest(include_retired=True)
        reply = await self._call("ListWorkers", request, "asking for our state")
        return next((w.state for w in reply.workers if w.worker_id == self.worker_id), "")

    async def _work(self) -> None:
        while not self._draining:
            self._wake.clear()
            if self.session.refused:
                raise WorkerStopped(self.session.refused)
            if self._time_to_leave():
                return
            reply = self._take_pushes() if self.session.opened.is_set() else await self._ping(draining=False)
            if reply.concurrency and reply.concurrency != self.concurrency:
                log.info("concurrency changed from %d to %d by the server", self.concurrency, reply.concurrency)
                self.concurrency = reply.concurrency
            await self._cancel(reply.cancel_task_ids)
            new = [task for task in reply.tasks if task.task_id not in self.slots and not self._ran(task)]
            for task in new:
                self.slots[task.task_id] = Slot(task)
            # Tasks that can start at once go straight from A to R; only those that must wait are accepted (C).
            free = self.concurrency - self._running() - sum(self.slots[t].size for t in self.ready if t in self.slots)
            waiting = []
            for task in new:
                slot = self.slots[task.task_id]
                if not waiting and not self._draining and self._fits(slot.size, free):
                    self._start(slot)
                    free -= slot.size
                else:
                    waiting.append(task)
            for task in waiting:
                self._accept(task)
            self._start_ready()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.ping_interval)

    async def _watch_for_silence(self) -> None:
        """Apart from the work loop, which may wait long on a call to an unreachable server."""
        while True:
            await asyncio.sleep(SILENCE_CHECK_SECONDS)
            self._fence_if_cut_off()

    def _fence_if_cut_off(self) -> None:
        """Cut off from the server for most of its worker timeout, kill the running tasks and hand them back.

        The server gives a silent worker's tasks to others once the timeout has passed; a copy still running here
        then would run twice at once. So the copies die first, at FENCE_SHARE of the timeout; they are handed back
        when the server is reached again (a server that declared us lost has requeued them already).
        """
        timeout = self.session.server_timeout
        if not timeout or self.session.silent_for() < FENCE_SHARE * timeout or self._fencing is not None:
            return
        running = [slot for slot in self.slots.values() if slot.runner is not None]
        if not running:
            return
        reason = f"worker {self.worker_id} heard nothing from the server for {self.session.silent_for():.0f} s"
        log.warning("%s: killing its %d running tasks before the server gives them to others", reason, len(running))
        self._fencing = asyncio.create_task(self._kill_and_hand_back(running, reason, FENCE_KILL_GRACE_SECONDS))
        self._fencing.add_done_callback(self._fenced)

    def _fenced(self, task: asyncio.Task[None]) -> None:
        self._fencing = None
        if not task.cancelled() and task.exception() is not None:
            log.error("handing back the tasks killed while cut off failed: %s", task.exception())

    def _ran(self, task: pb.Task) -> bool:
        return (task.task_id, task.attempts) in self.finished

    def _time_to_leave(self) -> bool:
        """Leave near the job's walltime, or after idle_timeout seconds without any task."""
        if self.walltime.due():
            self._stop_reason = (
                f"the Slurm job of worker {self.worker_id} is within {self.walltime.margin:g} s of its end"
            )
        elif self.slots:
            self._idle_since = time.monotonic()
        elif self.settings.idle_timeout and time.monotonic() - self._idle_since >= self.settings.idle_timeout:
            self._stop_reason = f"worker {self.worker_id} was idle for {self.settings.idle_timeout:g} s"
        if self._stop_reason:
            log.info("%s: draining and leaving", self._stop_reason)
            self._draining = True
        return self._draining

    def _pushed(self, push: pb.TaskPush) -> None:
        """Work, cancels or a new concurrency pushed on the session: taken up by the work loop at once."""
        self._pushes.append(push)
        self._wake.set()

    def _take_pushes(self) -> pb.TaskListAndOther:
        """The pushes received since the last turn of the work loop, merged as one ping's reply would be."""
        merged = pb.TaskListAndOther()
        pushes, self._pushes = self._pushes, []
        for push in pushes:
            merged.tasks.extend(push.tasks)
            merged.cancel_task_ids.extend(push.cancel_task_ids)
            if push.HasField("concurrency"):
                merged.concurrency = push.concurrency
        return merged

    def _stats(self) -> pb.WorkerStats | None:
        """The host's state for a heartbeat, when it changed enough to be worth sending."""
        stats = self.host_stats.changed(self._running())
        return None if stats is None else stats.to_message()

    async def _ping(self, *, draining: bool) -> pb.TaskListAndOther:
        request = pb.WorkerId(worker_id=self.worker_id, draining=draining)
        stats = self.host_stats.changed(self._running())
        if stats is not None:
            request.stats.CopyFrom(stats.to_message())
        try:
            reply = await self._call("PingAndTakeNewTasks", request, "pinging")
            self.session.heard()
        except grpc.aio.AioRpcError as err:
            if err.code() in REFUSED:
                raise WorkerStopped(f"the server disowned worker {self.worker_id}: {err.details()}") from err
            if err.code() in SERVER_FAILED:  # the next heartbeat tries again; reports wait until the server takes them
                if not self._pings_failing:  # said once: a server whose disk is full fails every ping for a while
                    log.warning("pinging failed on the server (%s): %s; trying again", err.code().name, err.details())
                self._pings_failing = True
                return pb.TaskListAndOther()
            raise
        if self._pings_failing:
            self._pings_failing = False
            log.info("pinging works again")
        return reply

    def _accept(self, task: pb.Task) -> None:
        """Take a task that must wait for room: it is ready at once. Its C report is sent only if it is still
        waiting after ACCEPTED_REPORT_DELAY: a prefetched short task starts within milliseconds, and its R says it
        was accepted; a C for it would cost the server a store update for every task of a burst."""
        self.ready.append(task.task_id)
        asyncio.get_running_loop().call_later(ACCEPTED_REPORT_DELAY, self._report_waiting, task.task_id, task.attempts)

    def _report_waiting(self, task_id: int, attempt: int) -> None:
        """A task still waiting for room is reported C (a refusal drops it, or kills it if it started meanwhile)."""
        slot = self.slots.get(task_id)
        if slot is None or slot.task.attempts != attempt or slot.state is not TaskState.ACCEPTED:
            return  # started (its R goes or went), or no longer ours
        answer = self._send_status(task_id, Status.ACCEPTED)
        self._settling.add(asyncio.ensure_future(self._settle(task_id, Status.ACCEPTED, answer)))
        self._settling = {future for future in self._settling if not future.done()}

    def _running(self) -> int:
        """Slots taken by running tasks (a task counts as its `slots`)."""
        return sum(slot.size for slot in self.slots.values() if slot.runner is not None)

    def _fits(self, size: int, free: int) -> bool:
        # A task bigger than the whole concurrency (lowered live) still runs once the worker is otherwise idle.
        return size <= free or (free >= self.concurrency and self._running() == 0)

    def _start(self, slot: Slot) -> None:
        slot.move(TaskState.RUNNING)
        slot.runner = asyncio.create_task(self._run_task(slot))

    def _start_ready(self) -> None:
        while self.ready and not self._draining:
            slot = self.slots.get(self.ready[0])
            if slot is None or slot.state is not TaskState.ACCEPTED:
                self.ready.popleft()
                continue
            if not self._fits(slot.size, self.concurrency - self._running()):
                break  # oldest first: the next one waits for room
            self.ready.popleft()
            self._start(slot)

    async def _cancel(self, task_ids: Iterable[int]) -> None:
        """The server cancelled these tasks. Kill the running ones (their runner then reports F, which the
        server takes as the end of the kill); drop the others and report F for them at once."""
        for task_id in task_ids:
            slot = self.slots.get(task_id)
            if slot is not None and slot.runner is not None:
                if slot.move(TaskState.CANCELLED):
                    log.info("task %d was cancelled: killing it", task_id)
                    await self._kill([slot])
                continue
            if slot is not None:
                slot.move(TaskState.REPORTED)
                self._forget(slot)
                with contextlib.suppress(ValueError):
                    self.ready.remove(task_id)
            await self._report(task_id, Status.FAILED, reason="cancelled before it started")

    # --- one task ----------------------------------------------------------------------------------------------

    async def _run_task(self, slot: Slot) -> None:
        """Run the task, then act on what became of it."""
        started = attempt_start(slot.task.attempts, self.worker_id, self.name)
        try:
            # The task starts without waiting for the server's answer to R, which then travels with its end; a
            # refusal (the task is no longer ours) kills it.
            answer = self._send_status(slot.task_id, Status.RUNNING, usage=started)
            slot.running_report = asyncio.ensure_future(self._settle(slot.task_id, Status.RUNNING, answer))
            await self._conclude(slot, await self._attempt(slot, started))
        except ServerGone:
            raise
        except Exception:
            log.exception("task %d: the worker failed around it", slot.task_id)
            with contextlib.suppress(Exception):
                failed = Outcome(None, "the worker failed while running the task; see its log", Failure.WORKER_ERROR)
                await self._finish(slot, failed)
        finally:
            await self._runner_done(slot)

    async def _attempt(self, slot: Slot, started: ResourceUsage) -> Ending:
        """Prepare the task and run it, unless something came first; what became of it."""
        launch = await self._prepare(slot, started)
        if isinstance(launch, Outcome):
            return Ending.report(launch)
        if slot.state is TaskState.CANCELLED:
            return Ending.report(_not_started(Outcome(None, "cancelled before it started"), started))
        if slot.state is not TaskState.RUNNING:
            return SETTLED  # handed back, hit by the job's end or disowned while it was prepared: never started
        return await self._judge(slot, await self._launch(slot, launch, started))

    async def _prepare(self, slot: Slot, started: ResourceUsage) -> _Launch | Outcome:
        """Where and how the task runs; the Outcome of a task that cannot start (its directory, its container)."""
        workdir = await self._workdir(slot)
        if isinstance(workdir, str):  # never run it somewhere else: its relative paths would mean other files
            return _not_started(Outcome(None, workdir, Failure.CWD), started)
        env = dict(self.environment, TQHPC_TASK_ID=str(slot.task_id), TQHPC_WORKER_ID=str(self.worker_id))
        env["PWD"] = str(workdir)
        if slot.task.array_id:
            env["TQHPC_ARRAY_ID"] = slot.task.array_id  # `tqhpc submit --array`
        if not slot.task.container:
            return _Launch(workdir, env)
        # Never run a container task bare: it would run with the wrong software, and quietly.
        prepared = await self.containers.command(slot.task.container, slot.task.command, workdir, env)
        if isinstance(prepared, Outcome):
            return _not_started(prepared, started)
        return _Launch(workdir, env, prepared)

    async def _workdir(self, slot: Slot) -> Path | str:
        """The directory the task runs in (the one it names, else a scratch one of its own), or why it cannot."""
        if slot.task.cwd:
            problem = await self.directories.problem(slot.task.cwd)
            return problem or Path(slot.task.cwd)
        try:
            slot.scratch = await asyncio.to_thread(self.scratch.attempt, slot.task_id, slot.task.attempts)
        except OSError as err:
            return f"cannot make a scratch directory for the task in {self.scratch_root}: {err}"
        return slot.scratch

    async def _launch(self, slot: Slot, launch: _Launch, started: ResourceUsage) -> Outcome:
        """Run the task's process to its end; its output goes to the reporter as it comes."""
        task_id = slot.task_id

        async def sink(log_type: str, data: bytes) -> None:
            await self.reporter.add(task_id, log_type, data)

        async def first_sample(usage: ResourceUsage) -> None:
            await self._report(task_id, Status.RUNNING, usage=placed(usage, started))

        limits = Limits.of(slot.task, self.settings)
        slot.process = TaskProcess(
            slot.task.command, launch.workdir, launch.env, sink, argv=launch.argv, limits=limits,
            on_first_sample=first_sample,
        )  # fmt: skip
        outcome = await slot.process.run()
        if slot.task.container:
            outcome = self.containers.judge(slot.task.container, outcome, slot.process.stderr_tail)
        if outcome.usage is not None:
            outcome.usage = placed(outcome.usage, started)
        return outcome

    async def _judge(self, slot: Slot, outcome: Outcome) -> Ending:
        """Whether the task's end is its own, or the batch system's stopping the job it ran in."""
        if slot.state not in STARTED:
            return SETTLED  # handed back, hit or disowned while it ran: that decides, not how it ended
        # A stop signal we did not send ourselves (a cancel or a limit) may be the batch system stopping the job.
        signalled = outcome.exit_code in _STOP_SIGNALS and slot.state is not TaskState.CANCELLED and not outcome.failure
        if signalled and not self._draining:
            await asyncio.sleep(STOP_SIGNAL_WAIT_SECONDS)  # the same signal may be on its way to us
            if slot.state not in STARTED:
                return SETTLED
        if self._draining and signalled:
            # The batch system signals every process of a job it stops, our tasks too: that is the
            # job's end, not the task's failure, so the task goes back to the queue.
            return Ending(
                Fate.HAND_BACK, reason=f"worker {self.worker_id} was stopping: {_exit_reason(outcome.exit_code)}"
            )
        return Ending.report(outcome)

    async def _conclude(self, slot: Slot, ending: Ending) -> None:
        """Act on what became of a task: report its end, or hand it back; a settled one needs nothing more."""
        if ending.fate is Fate.REPORT:
            assert ending.outcome is not None
            await self._finish(slot, ending.outcome)
        elif ending.fate is Fate.HAND_BACK and slot.move(TaskState.HANDED_BACK):
            await self.reporter.flush()
            await self._hand_back([slot.task_id], ending.reason)

    async def _runner_done(self, slot: Slot) -> None:
        """The runner's end: the room it took is free, unless the task waits in its slot to be handed back."""
        self.finished.add((slot.task_id, slot.task.attempts))
        if slot.state not in (TaskState.HANDED_BACK, TaskState.HIT):  # held until _drain hands it back
            self._forget(slot)
        self._start_ready()
        self._wake.set()
        if slot.scratch is not None:  # the attempt is over and its output read: what it left there goes
            await self.scratch.remove(slot.scratch)

    def _forget(self, slot: Slot) -> None:
        if self.slots.get(slot.task_id) is slot:
            del self.slots[slot.task_id]

    async def _finish(self, slot: Slot, outcome: Outcome) -> None:
        """Queue the final S or F report; the slot is free as soon as it is queued, its answer is awaited aside."""
        task_id = slot.task_id
        if slot.state is TaskState.DISOWNED:
            return  # refused: the task was not ours to run
        if outcome.error:
            await self.reporter.add(task_id, "E", f"tqhpc: {outcome.error}\n".encode())
        # No flush here: the status report carries the task's remaining output, which the server stores first.
        if self.slurm_job:
            await _handle_pending_signals()
        if not slot.move(TaskState.REPORTED):
            return  # the task ended as Slurm stopped the job: its end is not trusted, _drain hands it back
        ok = outcome.exit_code == 0 and not outcome.failure
        status = Status.SUCCEEDED if ok else Status.FAILED
        reason = outcome.error or ("" if ok else _exit_reason(outcome.exit_code))
        failure = "" if ok else outcome.failure or _exit_failure(outcome.exit_code)
        usage = outcome.usage
        if usage is not None:
            usage = dataclasses.replace(usage, exit_code=outcome.exit_code, failure=failure, final=True)
        # Awaited before the worker leaves (see _drain).
        answer = self._send_status(
            task_id, status, exit_code=outcome.exit_code, reason=reason, failure=failure, usage=usage
        )
        self._settling.add(asyncio.ensure_future(self._count_final(task_id, status, answer)))
        self._settling = {future for future in self._settling if not future.done()}

    async def _count_final(self, task_id: int, status: Status, answer: asyncio.Future[bool]) -> bool:
        if not await self._settle(task_id, status, answer):
            return False
        if status == Status.SUCCEEDED:
            self.summary.succeeded += 1
        else:
            self.summary.failed += 1
        return True

    async def _report(
        self,
        task_id: int,
        status: Status,
        *,
        exit_code: int | None = None,
        reason: str = "",
        failure: str = "",
        usage: ResourceUsage | None = None,
    ) -> bool:
        """Send a status; False when the server refuses it because the task is no longer ours."""
        answer = self._send_status(task_id, status, exit_code=exit_code, reason=reason, failure=failure, usage=usage)
        return await self._settle(task_id, status, answer)

    def _send_status(
        self,
        task_id: int,
        status: Status,
        *,
        exit_code: int | None = None,
        reason: str = "",
        failure: str = "",
        usage: ResourceUsage | None = None,
    ) -> asyncio.Future[bool]:
        """Queue a status report at once (reports leave in the order queued); the future holds the server's answer."""
        update = pb.TaskStatusUpdate(
            task_id=task_id, new_status=status.value, worker_id=self.worker_id, reason=reason, failure=failure
        )
        if exit_code is not None:
            update.exit_code = exit_code
        if usage is not None:
            update.usage.CopyFrom(usage.to_message())
        return self.reporter.submit(update)

    async def _settle(self, task_id: int, status: Status, answer: asyncio.Future[bool]) -> bool:
        """Wait for the server's answer to a status; a refusal means the task is no longer ours."""
        if await answer:
            return True
        log.warning("task %d: the server refused %s; dropping the task", task_id, status.value)
        await self._disown(task_id)
        return False

    # --- stopping ----------------------------------------------------------------------------------------------

    async def _drain(self) -> None:
        why = self._job_end_note() if self._job_ending else self._stop_reason or f"worker {self.worker_id} is stopping"
        with contextlib.suppress(WorkerStopped):  # draining first: tasks handed back are not pushed to us again
            await self._ping(draining=True)
        not_started = [slot for slot in self.slots.values() if slot.state is TaskState.ACCEPTED]
        for slot in not_started:
            slot.move(TaskState.HANDED_BACK)
        # Pushed before the server heard that we drain, and never taken since: they go back with the same reason.
        untaken = [
            task.task_id for task in self._take_pushes().tasks if task.task_id not in self.slots and not self._ran(task)
        ]
        await self._hand_back([slot.task_id for slot in not_started] + untaken, f"{why}; the task had not started")
        running = [slot for slot in self.slots.values() if slot.runner is not None]
        grace = min(self.settings.grace_period, self.walltime.grace())
        if running and not self._job_ending:
            await self._let_finish(running, grace)
        if self._job_ending:  # also when Slurm's signal came while we waited for the walltime or a grace period
            await self._kill_and_hand_back(
                self._mark_hit(),
                f"{self._job_end_note()}: scancel and the job's time limit signal every process of the job, "
                "this task's too, so it was killed and handed back rather than trusted to finish",
                JOB_END_KILL_GRACE_SECONDS,
            )
            # Tasks that ended before the signal: their reports finish before we leave, which would requeue them.
            sending = [slot.runner for slot in self.slots.values() if slot.state is TaskState.REPORTED and slot.runner]
            await asyncio.gather(*sending, return_exceptions=True)
        else:
            await self._kill_and_hand_back(
                [slot for slot in running if slot.runner and not slot.runner.done()],
                f"{why}; the task was killed after the {grace:g} s grace period"
                + (" so that Slurm would not kill it at the job's time limit" if self.walltime.due() else ""),
            )
        with contextlib.suppress(TimeoutError):  # every report acknowledged before we leave, unless the server is gone
            await asyncio.wait_for(self.reporter.flush(), max(self.connection.give_up_after, 1.0))
        await asyncio.gather(*self._settling, return_exceptions=True)
        with contextlib.suppress(grpc.aio.AioRpcError, ServerGone):
            await self._call("DeleteWorker", pb.WorkerId(worker_id=self.worker_id, draining=True), "leaving")

    async def _let_finish(self, running: list[Slot], grace: float) -> None:
        """Give running tasks up to `grace` seconds to end by themselves, pinging meanwhile; a hurry cuts it short."""
        log.info("stopping: waiting up to %g s for %d running tasks", grace, len(running))
        deadline = time.monotonic() + grace
        while any(not slot.runner.done() for slot in running if slot.runner) and time.monotonic() < deadline:
            if self._hurry.is_set():
                break
            await self._ping(draining=True)  # keep the heartbeat while we wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._hurry.wait(), min(self.settings.ping_interval, deadline - time.monotonic())
                )

    def _mark_hit(self) -> list[Slot]:
        """The tasks running as the Slurm job is stopped, marked so that none of them is reported done."""
        for slot in self.slots.values():
            if slot.state in STARTED:
                slot.move(TaskState.HIT)
        return [slot for slot in self.slots.values() if slot.state is TaskState.HIT]

    def _job_end_note(self) -> str:
        return f"worker {self.worker_id} got SIGTERM in Slurm job {self.slurm_job}"

    async def _kill_and_hand_back(
        self, slots: list[Slot], reason: str, kill_grace: float = KILL_ESCALATION_SECONDS
    ) -> None:
        """Kill these running tasks (whole trees), keep their output as this attempt's log, and hand them back;
        one that was reported done or handed back meanwhile is left as it is."""
        going = [slot for slot in slots if slot.move(TaskState.HANDED_BACK)]
        if not going:
            return
        await self._kill(going, kill_grace)
        await asyncio.gather(*(slot.runner for slot in going if slot.runner), return_exceptions=True)
        self.summary.killed_on_stop += len(going)
        await self.reporter.flush()  # the cut attempt's output goes to its own log before the task is requeued
        await self._hand_back([slot.task_id for slot in going], reason)

    async def _hand_back(self, task_ids: list[int], reason: str) -> None:
        if not task_ids:
            return
        for task_id in task_ids:
            self.slots.pop(task_id, None)
        if self.session.opened.is_set():
            # In a report: after the tasks' output and statuses, acknowledged, and sent again after a break.
            answer = self.reporter.release(task_ids, reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answer), max(self.connection.give_up_after, 1.0))
        else:  # no session open: the call a worker without one makes
            request = pb.TaskRelease(worker_id=self.worker_id, task_ids=task_ids, reason=reason)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._call("ReleaseTasks", request, "handing tasks back")
        self.summary.handed_back += len(task_ids)

    async def _confirm_killed(self, task_ids: list[int], reason: str) -> None:
        """Tell the server the tasks of a disowned worker are dead: a deleted worker's tasks wait for this (or for
        the worker to be lost) before they run elsewhere. Those of a worker declared lost went back already, and
        the server ignores them."""
        if not task_ids:
            return
        request = pb.TaskRelease(worker_id=self.worker_id, task_ids=task_ids, reason=f"{reason}; the task was killed")
        with contextlib.suppress(grpc.aio.AioRpcError, ServerGone, TimeoutError):
            await asyncio.wait_for(self._call("ReleaseTasks", request, "handing killed tasks back"), RELEASE_SECONDS)

    async def _disown(self, task_id: int) -> None:
        """The server refused a report of this task: it is no longer ours. Killed if it runs, and forgotten."""
        slot = self.slots.get(task_id)
        if slot is None or not slot.move(TaskState.DISOWNED):
            return
        self.summary.disowned += 1
        if slot.runner is None:
            self._forget(slot)  # not started: no runner will free its place
        await self._kill([slot])

    async def _kill_all(self) -> None:
        """This worker was disowned, or cannot go on: every task it holds is killed and dropped, none reported."""
        self.reporter.abandon()  # their reports would speak for tasks that are no longer ours
        slots = list(self.slots.values())
        self.summary.disowned += sum(slot.move(TaskState.DISOWNED) for slot in slots)
        await self._kill(slots)
        await asyncio.gather(*(slot.runner for slot in slots if slot.runner), return_exceptions=True)
        self.slots.clear()

    @staticmethod
    async def _kill(slots: Iterable[Slot], grace: float = KILL_ESCALATION_SECONDS) -> None:
        """The one place tasks' processes are killed: each whole tree, SIGTERM and after `grace` seconds SIGKILL."""
        await asyncio.gather(*(slot.process.kill(grace) for slot in slots if slot.process is not None))

    def _report_summary(self) -> None:
        s = self.summary
        log.info(
            "worker %d stopped: %d succeeded, %d failed, %d handed back to the queue (%d of them killed at stop), "
            "%d dropped because the server gave them to others",
            self.worker_id, s.succeeded, s.failed, s.handed_back, s.killed_on_stop, s.disowned,
        )  # fmt: skip


def _not_started(outcome: Outcome, started: ResourceUsage) -> Outcome:
    """A task that ended before its process started still gets a final usage record, with where and when."""
    outcome.usage = placed(ResourceUsage(ended_at=time.time(), final=True), started)
    return outcome


def _exit_failure(exit_code: int | None) -> str:
    if exit_code is None:
        return Failure.START
    return Failure.SIGNAL if exit_code < 0 else Failure.EXIT_CODE


async def _handle_pending_signals() -> None:
    """Let the event loop run the handler of a signal that has already reached this process.

    The C-level handler only writes the signal's number to the loop's wakeup socket. The loop's reader of that
    socket runs after the callbacks already waiting, and schedules the handler behind the ones it finds waiting:
    a coroutine that yields three times resumes after the handler has run.
    """
    for _ in range(3):
        await asyncio.sleep(0)


STOP_SIGNAL_WAIT_SECONDS = 0.5
"""A task killed by SIGTERM waits this long before it is reported failed: its worker may be stopping with it."""
FENCE_SHARE = 0.6
"""Share of the server's worker timeout a worker may go unheard before it kills its running tasks."""
SILENCE_CHECK_SECONDS = 0.2
FENCE_KILL_GRACE_SECONDS = 1.0
"""SIGTERM to SIGKILL for tasks killed while cut off: they must be dead before the server's timeout passes."""
RELEASE_SECONDS = 10.0
"""How long a disowned worker tries to hand back the tasks it killed; past it, the worker timeout frees them."""
_STOP_SIGNALS = frozenset({-signal.SIGTERM, -signal.SIGKILL, -signal.SIGINT})


def _exit_reason(exit_code: int | None) -> str:
    if exit_code is None:
        return "the task did not start"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}"

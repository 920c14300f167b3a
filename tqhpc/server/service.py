"""The TaskQueue servicer: translates RPCs into store operations and domain errors into gRPC statuses."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import grpc
from grpc import aio

from .._proto import pb, rpc
from ..errors import FailedPrecondition, InvalidArgument, NotFound, TqhpcError
from ..records import WorkerInfo, WorkerState, WorkerStats
from ..status import parse_status_filter
from ..store import Database, pruning, taskflow
from ..store import tasks as task_ops
from ..store import usage as usage_ops
from ..store import workers as worker_ops
from ..store.changes import Changes
from ..store.crashes import DEFAULT_CRASH_LIMIT
from ..store.health import StorageHealth
from . import listing, overview, reports, submission, validate
from .autoalloc import NO_PROFILES, Autoallocator
from .log_intake import HOLD_SECONDS, LogIntake
from .logs import LOG_TYPE_SPELLINGS, LOG_TYPES, Chunk, LogStore
from .pushing import Outgoing, Pusher, Pushers
from .registration import Undecodable
from .sessions import SessionBook, SessionEnd

log = logging.getLogger("tqhpc.server")

FOLLOW_POLL_SECONDS = 5.0
MAX_WORKERS_PER_CREATE = 1000

R = TypeVar("R")
A = TypeVar("A")
C = TypeVar("C", bound=Changes)
M = TypeVar("M")


class Provider(Protocol):
    """Starts and stops workers for CreateWorker and DeleteWorker (local processes here; Slurm jobs later)."""

    name: str

    async def resolve(self, flavor: str, concurrency: int, prefetch: int | None) -> tuple[int, int]:
        """Refuse a flavor the provider does not know; return the (concurrency, prefetch) its workers get
        (prefetch None: the flavor's own)."""
        ...

    async def start(self, worker_ids: list[int], concurrency: int, prefetch: int, flavor: str) -> None: ...

    async def stop(self, worker_id: int) -> None: ...


MAPPED_ERRORS = (TqhpcError, sqlite3.Error, OSError)
"""What a handler may raise and the client sees as a clear status; anything else is a bug, and reaches the client
as UNKNOWN with its traceback in the server's log."""


def _status_of(what: str, err: Exception, health: StorageHealth) -> tuple[grpc.StatusCode, str]:
    """The status a client gets for one of MAPPED_ERRORS raised in `what`: a domain error's own code and message,
    or INTERNAL with one line saying the storage failed."""
    if isinstance(err, TqhpcError):
        return err.code, str(err)
    return _storage_failure(what, err, health)


def _unary(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """A handler with one answer (to one request or to a stream of them): its errors become a clear status."""

    @functools.wraps(method)
    async def handler(self: TaskQueueService, request: Any, context: aio.ServicerContext) -> R:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())
        try:
            return await method(self, request, context)
        except MAPPED_ERRORS as err:
            await context.abort(*_status_of(method.__name__, err, self.db.health))
            raise  # unreachable: abort raises

    return handler


def _streamed(method: Callable[..., AsyncIterator[M]]) -> Callable[..., AsyncIterator[M]]:
    """A handler that answers with a stream: its errors end the stream with a clear status, as `_unary`'s do."""

    @functools.wraps(method)
    async def handler(self: TaskQueueService, request: Any, context: aio.ServicerContext) -> AsyncIterator[M]:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())
        try:
            async with contextlib.aclosing(method(self, request, context)) as messages:
                async for message in messages:
                    yield message
        except MAPPED_ERRORS as err:
            await context.abort(*_status_of(method.__name__, err, self.db.health))

    return handler


def _storage_failure(what: str, err: Exception, health: StorageHealth) -> tuple[grpc.StatusCode, str]:
    """A full disk or a locked or broken database: said once per outage in the server's log, one line for the
    client (a worker takes it as a reason to send its report again later)."""
    health.failed(what, err)
    return (
        grpc.StatusCode.INTERNAL,
        f"the server could not store or read data ({type(err).__name__}: {err}); see its server.log",
    )


class TaskQueueService(rpc.TaskQueueServicer):
    def __init__(
        self,
        db: Database,
        logs: LogStore,
        providers: dict[str, Provider],
        crash_limit: int = DEFAULT_CRASH_LIMIT,
        worker_timeout: float = 60.0,
    ) -> None:
        self.db = db
        self.logs = logs
        self.providers = providers
        self.crash_limit = crash_limit  # losses of its worker while running after which a task fails
        self.heartbeat_seconds = worker_timeout / 4  # what session workers are asked for: 3 may go missing
        self.pools: Autoallocator | None = None  # set by the server: Slurm pool listing and resume
        self.sessions = SessionBook(self._session_broke)
        self.pushers = Pushers()
        self._last_report: dict[int, int] = {}  # per session worker: the last report applied
        self._storing: set[asyncio.Future[object]] = set()  # SendTaskLogs calls' output being stored

    # --- tasks -------------------------------------------------------------------------------------------------

    @_unary
    async def SubmitTask(self, request: pb.TaskRequest, context: aio.ServicerContext) -> pb.TaskResponse:
        spec = submission.new_task(request)
        ids = await self._write(lambda c: _submitted(taskflow.insert_batch(c, [spec], time.time(), batch=False)))
        return pb.TaskResponse(task_id=ids[0])

    @_unary
    async def GetTask(self, request: pb.TaskId, context: aio.ServicerContext) -> pb.Task:
        task = await self.db.run(
            lambda c: usage_ops.with_all_usage(c, taskflow.with_details(c, [task_ops.get_task(c, request.task_id)])[0])
        )
        return task.to_message()

    @_unary
    async def ListTasks(self, request: pb.ListTasksRequest, context: aio.ServicerContext) -> pb.TaskList:
        """The whole listing in one message, as seed clients expect; read like StreamTasks, beside the writer."""
        whole = pb.TaskList()
        async for page in listing.task_pages(self.db.path, listing.task_filter(request)):
            whole.tasks.extend(page.tasks)
        return whole

    @_streamed
    async def StreamTasks(
        self, request: pb.ListTasksRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.TaskPage]:
        """ListTasks in pages as they are read: the first rows leave at once, and no side holds the whole listing."""
        query, size = listing.task_filter(request), listing.page_size(request)
        async for page in listing.task_pages(self.db.path, query, size):
            yield page

    @_unary
    async def GetOverview(self, request: pb.OverviewRequest, context: aio.ServicerContext) -> pb.Overview:
        """Counts, recent ends, the latest failures and the live workers, read beside the writer from indexes."""
        name = validate.name(request.name, "task name")
        failures = overview.failure_limit(request.failures)
        found = await asyncio.to_thread(overview.read, self.db.path, self.logs, name, failures)
        return overview.message(found, [self._with_last_heartbeat(worker) for worker in found.workers])

    @_streamed
    async def TaskStatsPages(
        self, request: pb.ListTasksRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.TaskStatsPage]:
        """StreamTasks reduced to the figures `tqhpc stats` sums up, in columns."""
        query, size = listing.task_filter(request), listing.page_size(request)
        async for page in listing.stats_pages(self.db.path, query, size):
            yield page

    # --- batches, statuses of many, cancel, retry --------------------------------------------------------------

    @_unary
    async def SubmitTasks(self, request: pb.TaskBatch, context: aio.ServicerContext) -> pb.TaskIds:
        specs = submission.new_tasks(request.tasks)
        ids = await self._write(lambda c: _submitted(taskflow.insert_batch(c, specs, time.time())))
        return pb.TaskIds(task_ids=ids)

    @_unary
    async def GetTaskStatuses(self, request: pb.TaskIds, context: aio.ServicerContext) -> pb.TaskStatuses:
        ids = list(request.task_ids)
        found = await self.db.run(lambda c: taskflow.statuses_of(c, ids))
        letters, codes = [], []
        for task_id in ids:
            status, exit_code = found.get(task_id, ("?", None))
            letters.append(status)
            codes.append(exit_code or 0)
        return pb.TaskStatuses(letters="".join(letters), exit_codes=codes)

    @_unary
    async def CancelTasks(self, request: pb.TaskSelection, context: aio.ServicerContext) -> pb.TaskIds:
        ids = await self._select_and(request, taskflow.cancel)
        if ids:
            log.info("cancelled %d tasks", len(ids))
        return pb.TaskIds(task_ids=ids)

    @_unary
    async def RetryTasks(self, request: pb.TaskSelection, context: aio.ServicerContext) -> pb.TaskIds:
        return pb.TaskIds(task_ids=await self._select_and(request, taskflow.retry))

    @_unary
    async def PruneTasks(self, request: pb.PruneRequest, context: aio.ServicerContext) -> pb.TaskIds:
        age = request.older_than_seconds
        if not math.isfinite(age) or age < 0:
            raise InvalidArgument(f"older_than_seconds must be a finite number of seconds, 0 or more, not {age}")
        letters = request.status or "SFX"
        if not set(letters) <= {"S", "F", "X"}:
            raise InvalidArgument(f"only ended tasks are pruned: status takes letters of S, F and X, not {letters!r}")
        name = validate.name(request.name, "task name")
        removed = await self.prune(time.time() - age, name, letters)
        return pb.TaskIds(task_ids=removed)

    async def prune(self, ended_before: float, name: str = "", letters: str = "SFX") -> list[int]:
        """Remove ended tasks (see store.pruning), then their output; the ids removed."""

        def run(conn: sqlite3.Connection) -> dict[int, int]:
            return pruning.remove(conn, pruning.prunable(conn, ended_before, name, letters))

        attempts = await self.db.run(run)
        if attempts:
            await asyncio.to_thread(self.logs.remove, attempts)
            log.info("pruned %d ended tasks and their output", len(attempts))
        return sorted(attempts)

    async def _select_and(self, request: pb.TaskSelection, action: Callable[..., Changes]) -> list[int]:
        """Run `action` on the tasks the selection names; the ids it acted on."""
        statuses = parse_status_filter(request.status_filter)
        ids = list(request.task_ids)
        name = validate.name(request.name, "task name")

        def run(conn: sqlite3.Connection) -> tuple[list[int], Changes]:
            changes = action(conn, taskflow.select_ids(conn, ids, name, statuses), time.time())
            return changes.ids, changes

        return await self._write(run)

    @_unary
    async def UpdateTaskStatus(self, request: pb.TaskStatusUpdate, context: aio.ServicerContext) -> pb.Ack:

        def apply(conn: sqlite3.Connection) -> tuple[None, Changes]:
            changes = Changes()
            task, new = reports.apply_status(conn, request, changes.finished)  # dependents it settled, finished
            changes.status_reported(task, new)
            return None, changes

        await self._write(apply)
        return pb.Ack(success=True)

    # --- logs --------------------------------------------------------------------------------------------------

    @_unary
    async def SendTaskLogs(self, request_iterator: AsyncIterator[pb.TaskLog], context: aio.ServicerContext) -> pb.Ack:
        """Store a call's chunks once the client has ended its stream, in one append, or as they come once the call
        has been open a while; refuse bad ones one by one so the good ones of the same stream are kept. A call cut
        short before it went live stores nothing (see log_intake)."""
        intake = LogIntake(self._holders, self.logs)
        hold = asyncio.get_running_loop().call_later(HOLD_SECONDS, self._hold_over, intake)
        try:
            async for chunk in request_iterator:
                intake.take(chunk)
                if intake.should_store and (failure := await self._store_intake(intake)) is not None:
                    await context.abort(*failure)
        finally:
            hold.cancel()
        # The end of the messages is also how grpc shows a call cancelled midway. A call still alive after this
        # round trip through grpc's core was ended by its client; one cut short is cancelled here, storing nothing.
        await context.send_initial_metadata(())
        # Shielded: the call is complete, so a client that cancels it now (scitq's worker does, once it has reported
        # the task's status) still has its output stored.
        storing = asyncio.ensure_future(self._store_intake(intake))
        self._storing.add(storing)  # held until done, even when this handler is cancelled meanwhile
        storing.add_done_callback(self._storing.discard)
        failure = await asyncio.shield(storing)
        if failure is not None:
            await context.abort(*failure)
        if intake.stale:
            log.info("dropped %d output chunks from workers that no longer hold their tasks", intake.stale)
        refusal = intake.refusal()
        if refusal is not None:
            await context.abort(*refusal)
        return pb.Ack(success=True)

    def _hold_over(self, intake: LogIntake) -> None:
        """A SendTaskLogs call open for HOLD_SECONDS: what it holds is stored now, what comes later as it comes."""
        intake.live = True
        if intake.should_store:
            storing = asyncio.ensure_future(self._store_intake(intake))
            self._storing.add(storing)
            storing.add_done_callback(self._storing.discard)

    async def _store_intake(self, intake: LogIntake) -> tuple[grpc.StatusCode, str] | None:
        """Store a SendTaskLogs call's output; a storage failure is logged and returned, not raised (the call may be
        gone by then, and nobody would see it)."""
        try:
            await intake.store()
        except (sqlite3.Error, OSError) as err:
            return _storage_failure("SendTaskLogs", err, self.db.health)
        return None

    async def _holders(self, task_ids: set[int]) -> dict[int, int | None]:
        return await self.db.run(lambda c: task_ops.holders(c, task_ids))

    @_streamed
    async def StreamTaskLogs(self, request: pb.TaskId, context: aio.ServicerContext) -> AsyncIterator[pb.TaskLog]:
        """Replay what is stored, then follow; end once the task is terminal and every byte has been sent."""
        task_id = request.task_id
        offsets = dict.fromkeys(LOG_TYPES, 0)
        with self.logs.waiter(task_id) as wakeup:
            while True:
                wakeup.clear()
                task = await self.db.run(lambda c: task_ops.get_task(c, task_id))
                # Read only after the status: output sent before a terminal status is on disk before it.
                for message in self._read_new(task_id, offsets, final=task.status.terminal):
                    yield message
                if task.status.terminal or request.snapshot:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), FOLLOW_POLL_SECONDS)

    def _read_new(self, task_id: int, offsets: dict[str, int], *, final: bool) -> Iterator[pb.TaskLog]:
        """New output as messages, read as they are sent: a log of gigabytes is never held in memory at once."""
        for log_type in LOG_TYPES:
            if self.logs.size(task_id, log_type) < offsets[log_type]:
                offsets[log_type] = 0  # the task went back to the queue: its output starts again
            while data := self.logs.read_from(task_id, log_type, offsets[log_type]):
                text, data = _text_of(data, final=final)
                if not data:
                    break  # only the start of a UTF-8 character so far: wait for the rest
                offsets[log_type] += len(data)
                message = pb.TaskLog(task_id=task_id, log_type=log_type, log_text=text)
                if text.encode() != data:
                    message.log_bytes = data
                yield message

    # --- workers -----------------------------------------------------------------------------------------------

    @_unary
    async def RegisterWorker(self, request: pb.WorkerInfo, context: aio.ServicerContext) -> pb.WorkerId:
        name = validate.name(request.name, "worker name")
        concurrency = request.concurrency if request.HasField("concurrency") and request.concurrency > 0 else 1
        prefetch = request.prefetch if request.HasField("prefetch") else 0
        worker_id = request.worker_id if request.HasField("worker_id") else None
        hostname = validate.name(request.hostname, "hostname") or _peer_host(context)
        walltime_end = request.walltime_end if request.HasField("walltime_end") else None
        worker = await self.db.run(
            lambda c: worker_ops.register(
                c,
                name=name,
                concurrency=concurrency,
                prefetch=prefetch,
                hostname=hostname,
                pid=request.pid or None,
                now=time.time(),
                worker_id=worker_id,
                walltime_end=walltime_end,
            )
        )
        capable = request.container_capable if request.HasField("container_capable") else None
        note = validate.name(request.container_note, "container note")
        await self.db.run(lambda c: usage_ops.set_container_capability(c, worker.worker_id, capable, note))
        log.info("worker %d (%s) registered from %s", worker.worker_id, worker.name, hostname)
        if capable is False:
            log.warning("worker %d cannot run container tasks: %s", worker.worker_id, note)
        return pb.WorkerId(worker_id=worker.worker_id)

    @_unary
    async def PingAndTakeNewTasks(self, request: pb.WorkerId, context: aio.ServicerContext) -> pb.TaskListAndOther:
        stats = (
            validate.storable(WorkerStats.from_message(request.stats), "stats") if request.HasField("stats") else None
        )

        def ping(conn: Any) -> worker_ops.PingResult:
            result = worker_ops.ping(conn, request.worker_id, time.time(), draining=request.draining)
            if stats is not None:
                usage_ops.store_stats(conn, request.worker_id, stats)  # the host's state at this ping
            return result

        result = await self.db.run(ping)
        return pb.TaskListAndOther(
            tasks=[t.to_message() for t in result.tasks],
            concurrency=result.concurrency,
            cancel_task_ids=result.cancel_ids,
        )

    @_unary
    async def ReleaseTasks(self, request: pb.TaskRelease, context: aio.ServicerContext) -> pb.Ack:
        reason = request.reason or f"handed back by worker {request.worker_id}"

        def release(conn: sqlite3.Connection) -> tuple[list[int], Changes]:
            released = worker_ops.release(conn, request.worker_id, list(request.task_ids), reason)
            return released, Changes(requeued=released)

        released = await self._write(release)
        if released:
            log.info("worker %d handed back tasks %s: %s", request.worker_id, released, reason)
        return pb.Ack(success=True)

    @_unary
    async def ListWorkers(self, request: pb.ListWorkersRequest, context: aio.ServicerContext) -> pb.WorkersList:
        """Live workers only, unless retired ones are asked for: a seed client sees no state to tell them apart."""
        retired = request.include_retired
        workers = await self.db.run(lambda c: usage_ops.with_stats(c, worker_ops.list_workers(c, retired)))
        return pb.WorkersList(workers=[self._with_last_heartbeat(w).to_message() for w in workers])

    def _with_last_heartbeat(self, worker: WorkerInfo) -> WorkerInfo:
        """The worker as listed, with a heartbeat not yet written to the store (see SessionBook.seen)."""
        seen = self.sessions.last_seen(worker.worker_id)
        if seen is None or (worker.last_ping or 0) >= seen:
            return worker
        return dataclasses.replace(worker, last_ping=seen)

    @_unary
    async def UpdateWorker(self, request: pb.WorkerUpdate, context: aio.ServicerContext) -> pb.Worker:
        concurrency = request.concurrency if request.HasField("concurrency") else None
        prefetch = request.prefetch if request.HasField("prefetch") else None

        def update(conn: sqlite3.Connection) -> tuple[WorkerInfo, Changes]:
            worker = worker_ops.update_worker(conn, request.worker_id, concurrency=concurrency, prefetch=prefetch)
            return worker, Changes(for_workers=True)  # a session worker is told its new concurrency at once

        return (await self._write(update)).to_message()

    @_unary
    async def CreateWorker(self, request: pb.WorkerRequest, context: aio.ServicerContext) -> pb.WorkerIds:
        prefetch = None if request.prefetch_from_profile else request.prefetch
        ids = await self.create_workers(request.provider, request.number, request.concurrency, prefetch, request.flavor)
        return pb.WorkerIds(worker_ids=ids)

    async def create_workers(
        self, provider_name: str, number: int, concurrency: int, prefetch: int | None, flavor: str
    ) -> list[int]:
        """CreateWorker, also used by automatic allocation of Slurm pools."""
        provider = self.providers.get(provider_name)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise InvalidArgument(f"unknown provider {provider_name!r} (this server knows: {known})")
        if not 1 <= number <= MAX_WORKERS_PER_CREATE:
            raise InvalidArgument(f"number must be between 1 and {MAX_WORKERS_PER_CREATE}, not {number}")
        sized = await provider.resolve(flavor, concurrency, prefetch)
        ids = await self.db.run(lambda c: worker_ops.create_workers(c, number, provider.name, *sized, time.time()))
        try:
            await provider.start(ids, *sized, flavor)
        except Exception as err:
            reason = f"the {provider.name} provider could not start the worker: {err}"
            for worker_id in ids:
                await self.retire_if_live(worker_id, WorkerState.LOST, reason)
            raise
        log.info("created %s workers %s", provider.name, ids)
        return ids

    @_unary
    async def DeleteWorker(self, request: pb.WorkerId, context: aio.ServicerContext) -> pb.Ack:
        """Stop a worker; a worker that deletes itself while draining is leaving on its own, so it is `stopped`."""
        worker_id = request.worker_id
        # A worker with a session hands back what it killed; a ping-only one cannot, and its tasks go back at once.
        holds = self.sessions.is_open(worker_id)

        def retire(conn: sqlite3.Connection) -> tuple[tuple[WorkerInfo, list[int]], Changes]:
            worker = worker_ops.get_worker(conn, worker_id)
            leaving = request.draining and worker.state in WorkerState.LIVE
            state = WorkerState.STOPPED if leaving else WorkerState.DELETED
            reason = f"worker {worker_id} stopped" if leaving else f"worker {worker_id} was deleted"
            worker, requeued = worker_ops.retire(conn, worker_id, state, reason, hold_tasks=holds)
            return (worker, requeued), Changes(requeued=requeued)

        worker, requeued = await self._write(retire)
        log.info("worker %d is %s; tasks back to pending: %s", worker_id, worker.state, requeued)
        if worker.state == WorkerState.DELETED:
            # Its session learns of it at its next dispatch and ends; the worker kills its tasks and hands them back.
            self.pushers.kick_all()
        provider = self.providers.get(worker.provider)
        if provider is not None and worker.state == WorkerState.DELETED:
            await provider.stop(worker_id)
        return pb.Ack(success=True)

    async def WorkerSession(
        self, request_iterator: AsyncIterator[pb.WorkerMessage], context: aio.ServicerContext
    ) -> AsyncIterator[pb.ServerMessage]:
        """A worker's long-lived stream: hello, welcome, then open until a goodbye or the connection's end."""
        hello = await _first_message(request_iterator, context)
        worker_id = hello.worker_id
        try:
            await self.db.run(lambda c: _check_session_worker(c, worker_id))
        except MAPPED_ERRORS as err:
            await context.abort(*_status_of("WorkerSession", err, self.db.health))
        self.sessions.opened(worker_id)
        log.info("worker %d: session open", worker_id)
        # Without a goodbye, the end of the stream is the end of the worker: grpc shows a peer's cancelled call or
        # dropped connection to us as the plain end of its messages, or as this handler's cancellation.
        how = SessionEnd.BROKEN
        outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        pusher = Pusher(worker_id, self.db.run, outbox)
        reader = self.sessions.reading(
            asyncio.create_task(self._follow_session(worker_id, request_iterator, outbox, pusher))
        )
        reader.add_done_callback(lambda _: outbox.put_nowait(_READER_DONE))
        try:
            if worker_id not in self._last_report:
                self._last_report[worker_id] = await self.db.run(lambda c: worker_ops.last_report(c, worker_id))
            welcome = pb.SessionWelcome(worker_id=worker_id, heartbeat_seconds=self.heartbeat_seconds)
            yield pb.ServerMessage(welcome=welcome)
            self.pushers.add(pusher)
            refusal = None
            while (message := await outbox.get()) is not _READER_DONE:
                if isinstance(message, tuple):  # the pusher found the worker retired: its connection is fine
                    how, refusal = SessionEnd.REFUSED, message
                    break
                yield message
            if refusal is None:
                how, refusal = await reader
            if refusal is not None:
                await context.abort(*refusal)
        finally:
            reader.cancel()
            await self.pushers.remove(pusher)
            self.sessions.ended(worker_id, how)

    async def _follow_session(
        self,
        worker_id: int,
        request_iterator: AsyncIterator[pb.WorkerMessage],
        outbox: asyncio.Queue[Outgoing],
        pusher: Pusher,
    ) -> tuple[SessionEnd, tuple[grpc.StatusCode, str] | None]:
        """Read a session to its end; say how it ended, and the status to end the call with if not OK."""
        try:
            async for message in request_iterator:
                ended = await self._session_message(worker_id, message, outbox, pusher)
                if ended is not None:
                    return ended
        except asyncio.CancelledError:
            if not self.sessions.closing:
                raise
        if self.sessions.closing:
            return SessionEnd.BROKEN, (grpc.StatusCode.UNAVAILABLE, "the server is stopping; open the session later")
        return SessionEnd.BROKEN, None

    async def _session_message(
        self, worker_id: int, message: pb.WorkerMessage | Undecodable, outbox: asyncio.Queue[Outgoing], pusher: Pusher
    ) -> tuple[SessionEnd, tuple[grpc.StatusCode, str] | None] | None:
        """Act on one message of a session; how the session ends, if this message ends it."""
        if isinstance(message, Undecodable):
            return SessionEnd.REFUSED, (grpc.StatusCode.INVALID_ARGUMENT, message.describe())
        kind = message.WhichOneof("kind")
        if kind == "hello":
            return SessionEnd.REFUSED, (
                grpc.StatusCode.INVALID_ARGUMENT,
                "a session says hello once, in its first message",
            )
        if kind == "goodbye":
            log.info("worker %d is leaving: %s", worker_id, message.goodbye.reason or "no reason given")
            return SessionEnd.GOODBYE, None
        if kind == "report":
            try:
                outbox.put_nowait(await self._take_report(worker_id, message.report, pusher))
            except MAPPED_ERRORS as err:
                return SessionEnd.REFUSED, _status_of("WorkerSession", err, self.db.health)
        return None  # any other kind comes from a newer worker: ignored, so that both keep working

    async def _take_report(self, worker_id: int, report: pb.WorkerReport, pusher: Pusher) -> pb.ServerMessage:
        """Apply a report once: its output first (appended to the logs), then everything else in one store operation,
        with the dispatch of the room it freed."""
        if report.sequence <= self._last_report.get(worker_id, 0):
            return reports.ack(report.sequence, {})  # a resend after a reconnect: applied already
        if reports.only_heartbeat(report):  # kept in memory until the next look for silent workers
            self.sessions.seen(worker_id, time.time())
            self._last_report[worker_id] = report.sequence
            return reports.ack(report.sequence, {})

        sent = pusher.sent

        def apply(conn: sqlite3.Connection) -> tuple[worker_ops.Dispatch | None, reports.Applied]:
            applied = reports.apply_report(conn, worker_id, report)
            if applied.requeued:  # their output is moved aside first, or a new attempt could write into it
                return None, applied
            with contextlib.suppress(TqhpcError):  # a retired worker: its pusher ends the session
                return worker_ops.dispatch(conn, worker_id, time.time(), sent), applied
            return None, applied

        if report.logs:
            await self._store_session_output(worker_id, report.logs)
        found, applied = await self._store(apply)
        self._last_report[worker_id] = report.sequence
        if found is None and not applied.requeued:
            pusher.kick()  # no dispatch ran with the report: this session's own runs
        if report.released_task_ids:
            released = list(report.released_task_ids)
            log.info("worker %d handed back tasks %s in its report: %s", worker_id, released, report.release_reason)
        await self._follow_up(applied, served=pusher if found is not None else None)
        # Computed last, with no wait before the acknowledgement is queued: pushes reach the worker in the order read.
        push = pusher.news(found) if found is not None else None
        return reports.ack(report.sequence, applied.refused, push)

    async def _store_session_output(self, worker_id: int, chunks: Iterable[pb.TaskLog]) -> None:
        """Output of tasks this worker holds; late output of a task it lost is dropped, as with SendTaskLogs.

        A report resent after a crash between this and the store operation that records it carries its output
        again: the chunks' offsets keep what is stored already from being stored twice.
        """
        batch = []
        for chunk in chunks:
            log_type = LOG_TYPE_SPELLINGS.get(chunk.log_type)
            data = chunk.log_bytes or chunk.log_text.encode()
            if log_type is not None and data:
                offset = chunk.offset if chunk.HasField("offset") else None
                batch.append(Chunk(chunk.task_id, log_type, data, offset))
        ids = {chunk.task_id for chunk in batch}
        generations = self.logs.generations(ids)  # before the check: a requeue after it must void it
        holders = await self.db.run(lambda c: task_ops.holders(c, ids))
        await self.logs.append([chunk for chunk in batch if holders.get(chunk.task_id) == worker_id], generations)

    async def _session_broke(self, worker_id: int, reason: str) -> None:
        """The worker's last session ended with its connection: retire it as the reaper would, crashes counted."""
        with contextlib.suppress(NotFound, RuntimeError):  # RuntimeError: the store closed under a shutdown
            requeued = await self.retire_if_live(worker_id, WorkerState.LOST, reason)
            if requeued is None:  # not live: a deleted worker that still held tasks lets them go now
                requeued = await self._release_deleted(worker_id, reason) or None
            if requeued is not None:
                log.warning("%s; tasks back to pending: %s", reason, requeued)

    async def _release_deleted(self, worker_id: int, reason: str) -> list[int]:
        def release(conn: sqlite3.Connection) -> tuple[list[int], Changes]:
            requeued = worker_ops.release_deleted(conn, worker_id, reason)
            return requeued, Changes(requeued=requeued)

        return await self._write(release)

    async def mark_lost_workers(self, timeout: float) -> list[int]:
        """Retire workers silent for longer than `timeout`; their unfinished tasks go back to pending."""
        deadline = time.time() - timeout

        heartbeats = self.sessions.take_seen()
        # While the storage fails, and for a timeout after, a silent worker is no sign of a dead one: its reports
        # were refused, and it waits before sending them again.
        judging = not self.db.health.failed_within(timeout)

        def reap(conn: sqlite3.Connection) -> tuple[dict[int, list[int]], Changes]:
            # Found and retired in one transaction: a ping landing in between cannot be overruled.
            worker_ops.seen(conn, heartbeats)
            lost = {
                worker_id: worker_ops.retire(
                    conn,
                    worker_id,
                    WorkerState.LOST,
                    f"worker {worker_id} was lost: no ping for {timeout:g} s",
                    self.crash_limit,
                )[1]
                for worker_id in (worker_ops.silent_workers(conn, deadline) if judging else ())
            }
            for worker_id in worker_ops.silent_deleted_holders(conn, deadline):
                lost[worker_id] = worker_ops.release_deleted(
                    conn, worker_id, f"worker {worker_id} was deleted and then silent for {timeout:g} s"
                )
            return lost, Changes(requeued=[task_id for requeued in lost.values() for task_id in requeued])

        try:
            lost = await self._write(reap)
        except Exception:
            for worker_id, when in heartbeats.items():  # not written: kept for the next look, unless newer came
                if (self.sessions.last_seen(worker_id) or 0) < when:
                    self.sessions.seen(worker_id, when)
            raise
        for worker_id, requeued in lost.items():
            log.warning("worker %d lost: no ping for %g s; tasks back to pending: %s", worker_id, timeout, requeued)
        return list(lost)

    async def retire_if_live(self, worker_id: int, state: str, reason: str) -> list[int] | None:
        """Retire a worker still counted as live; return the tasks that went back to pending (None: it was not live)."""

        def retire(conn: sqlite3.Connection) -> tuple[list[int] | None, Changes]:
            if worker_ops.get_worker(conn, worker_id).state not in WorkerState.LIVE:
                return None, Changes()
            requeued = worker_ops.retire(conn, worker_id, state, reason, self.crash_limit)[1]
            return requeued, Changes(requeued=requeued)

        return await self._write(retire)

    # --- Slurm pools -------------------------------------------------------------------------------------------

    @_unary
    async def ListSlurmPools(self, request: pb.SlurmPoolListRequest, context: aio.ServicerContext) -> pb.SlurmPoolList:
        if self.pools is None:
            return pb.SlurmPoolList()
        return await self.pools.describe()

    @_unary
    async def ResumeSlurmPool(self, request: pb.SlurmPoolName, context: aio.ServicerContext) -> pb.SlurmPool:
        if self.pools is None:
            raise NotFound(NO_PROFILES)
        return await self.pools.resume(request.name)

    # --- the consequences of a store change ------------------------------------------------------------------

    async def _write(self, op: Callable[[sqlite3.Connection], tuple[A, C]]) -> A:
        """Run a store operation that returns (its answer, what it changed), draw the consequences, then answer."""
        answer, changes = await self._store(op)
        await self._follow_up(changes)
        return answer

    async def _store(self, op: Callable[[sqlite3.Connection], tuple[A, C]]) -> tuple[A, C]:
        """Run a store operation that returns (its answer, what it changed).

        A requeued task's output is moved aside as `ID.N.out` and `.err`, N the attempt that ended (read in the same
        operation), right after the commit on the writer thread: no later operation can hand the task to a worker
        before, so the next attempt's first bytes never land in the files of the one that ended."""

        def run(conn: sqlite3.Connection) -> tuple[A, C]:
            answer, changes = op(conn)
            if changes.requeued:
                attempts = changes.attempts = task_ops.attempt_numbers(conn, changes.requeued)
                self.db.after_commit(lambda: self.logs.rotate(attempts))
            return answer, changes

        return await self.db.run(run)

    async def _follow_up(self, changes: Changes, *, served: Pusher | None = None) -> None:
        """Every consequence of a store change, in one place.

        Followers of finished tasks are woken, and those of a task going back to the queue, whose output has been
        moved aside (see `_store`); then every pusher looks again. Otherwise the pushers look when a worker may have
        something new to do, but for `served`, a session whose dispatch ran in the store operation itself.
        """
        self.logs.notify(changes.finished)
        if changes.requeued:
            self.logs.notify(changes.requeued)
            self.pushers.kick_all()
        elif changes.for_workers:
            self.pushers.kick_all(but=served)


_READER_DONE = object()
"""Put in a session's outbox when its reader has ended: what was queued before it is still sent."""


def _text_of(data: bytes, *, final: bool) -> tuple[str, bytes]:
    """Decode for log_text; hold back a UTF-8 character cut at the end of a read, unless no more will come."""
    try:
        return data.decode(), data
    except UnicodeDecodeError as err:
        if not final and err.reason == "unexpected end of data" and err.start >= len(data) - 3:
            data = data[: err.start]
        return data.decode(errors="replace"), data


async def _first_message(
    request_iterator: AsyncIterator[pb.WorkerMessage], context: aio.ServicerContext
) -> pb.WorkerHello:
    """The session's hello, or the call ends with INVALID_ARGUMENT saying what came instead."""
    first = None
    with contextlib.suppress(StopAsyncIteration):
        first = await anext(aiter(request_iterator))
    if first is None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the session ended before its hello")
    if isinstance(first, Undecodable):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, first.describe())
    if first.WhichOneof("kind") != "hello":
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"a session starts with hello (the worker's id), not {first.WhichOneof('kind') or 'an empty message'}",
        )
    return first.hello


def _check_session_worker(conn: sqlite3.Connection, worker_id: int) -> None:
    """Only a registered worker still counted as live may open a session."""
    worker = worker_ops.get_worker(conn, worker_id, worker_ops.REGISTER_FIRST)
    if worker.state == WorkerState.STARTING:
        raise FailedPrecondition(f"worker {worker_id} was created but never registered: call RegisterWorker first")
    if worker.state not in WorkerState.LIVE:
        raise FailedPrecondition(worker_ops.retired_message(worker_id, worker.state))


def _submitted(ids: list[int]) -> tuple[list[int], Changes]:
    """New tasks: pending work, perhaps for a worker waiting for some."""
    return ids, Changes(ids=ids, for_workers=True)


def _peer_host(context: aio.ServicerContext) -> str:
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5555"
    kind, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0] if kind in {"ipv4", "ipv6"} else peer


__all__ = ["Provider", "TaskQueueService"]

"""`tqhpc.Client`: the blocking Python API over the gRPC service, used by the CLI and by users' scripts."""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from ._proto import pb
from .access import Access, find_access_file, read_access
from .channel import is_handshake_failure, sync_stub
from .records import ResourceUsage, TaskInfo, WorkerInfo
from .specs import SpecLike, TaskSpec, as_spec, batch_message, batches
from .status import Status
from .sweep import Sweep, submit_sweep
from .waiting import wait_letters

DEFAULT_TIMEOUT = 60.0
T = TypeVar("T")


class ClientError(RuntimeError):
    """The server refused a call or could not be reached; the message is one line meant for the user."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LogChunk:
    """A piece of a task's output: `data` holds the bytes exactly as the task wrote them, `text` the same as text."""

    task_id: int
    stream: str  # "O" stdout, "E" stderr
    data: bytes

    @property
    def text(self) -> str:
        """The bytes decoded as UTF-8, any that are not replaced by U+FFFD. The server never cuts a character
        between two chunks, so the texts of a task's chunks join into its whole output."""
        return self.data.decode(errors="replace")


@dataclass(frozen=True)
class TaskResult:
    """What became of one task: status, exit code, and which attempt this is."""

    task_id: int
    status: Status
    exit_code: int | None
    attempts: int  # the attempt shown (1 = first run)
    failure_retries: int  # re-runs after a failure used so far (requeues after a lost worker are not counted)
    name: str
    reason: str
    wall_time: float | None
    usage: ResourceUsage | None = None  # what the attempt shown cost: CPU time, peak RSS, I/O, where it ran
    failure: str = ""  # with F: timeout, memory, exit_code, signal, image_missing, ...

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCEEDED

    @classmethod
    def of(cls, task: TaskInfo) -> TaskResult:
        return cls(
            task.task_id, task.status, task.exit_code, task.attempts, task.failure_retries, task.name, task.reason,
            task.wall_time, task.usage, task.failure,
        )  # fmt: skip


@dataclass(frozen=True)
class TaskPage:
    """One page of a streamed listing: tasks in id order; `last` when no page follows."""

    tasks: list[TaskInfo]
    last: bool


@dataclass(frozen=True)
class FailedTask:
    """A failed task as an overview lists it, with the end of its stderr (where the error usually is)."""

    task: TaskInfo
    stderr_tail: str


@dataclass(frozen=True)
class Overview:
    """The queue at a glance (GetOverview): what `tqhpc top` shows, one small answer however long the queue."""

    counts: dict[Status, int]  # tasks by status; statuses with none are left out
    ended_last_10s: int  # tasks that ended (S, F, X) in the last 10 seconds
    ended_last_60s: int  # ... and in the last minute
    failures: list[FailedTask]  # the latest failed tasks, most recent first
    workers: list[WorkerInfo]  # live workers
    server_time: float  # the server's clock when it read all this

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @classmethod
    def from_message(cls, message: pb.Overview) -> Overview:
        return cls(
            {Status(letter): count for letter, count in message.counts.items()},
            message.ended_last_10s,
            message.ended_last_60s,
            [FailedTask(TaskInfo.from_message(f.task), f.stderr_tail) for f in message.failures],
            [WorkerInfo.from_message(w) for w in message.workers],
            message.server_time,
        )


STATUS_POLL_CHUNK = 50_000
PAGES_AHEAD = 4
"""Pages of a listing received while the caller is still busy with an earlier one."""


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, taken from it on a thread of their own up to `depth` ahead of the caller.

    gRPC receives the next message of a stream only when asked for it, so a caller busy printing a page would keep
    the server waiting; here the next pages travel meanwhile. An error of `items` is raised to the caller in turn.
    A caller that stops early must end `items` (cancel the call) for the thread to end.
    """
    handoff = _Handoff(depth)
    threading.Thread(target=handoff.receive, args=(items,), name="tqhpc-read-ahead", daemon=True).start()
    try:
        while True:
            is_item, value = handoff.ready.get()
            if not is_item:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        handoff.stopped.set()


class _Handoff:
    """The queue between `read_ahead`'s receiving thread and its caller: (True, item), then (False, error or None)."""

    def __init__(self, depth: int) -> None:
        self.ready: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
        self.stopped = threading.Event()  # the caller is gone: the thread stops handing over

    def receive(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._hand_over((True, item)):
                    return
        except BaseException as err:  # handed to the caller, who raises it
            self._hand_over((False, err))
        else:
            self._hand_over((False, None))

    def _hand_over(self, entry: tuple[bool, Any]) -> bool:
        while not self.stopped.is_set():
            try:
                self.ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _caller_cwd(specs: Sequence[TaskSpec]) -> str:
    """This process's current directory, which tasks run in (or are relative to) unless they name an absolute
    one; "" when every spec names an absolute directory, so a deleted current directory matters only if used."""
    if all(os.path.isabs(spec.cwd) for spec in specs):
        return ""
    try:
        return os.getcwd()
    except OSError as err:
        raise ClientError(
            f"the current directory cannot be read ({err.strerror}), and tasks run in the directory they are "
            "submitted from: change to an existing directory, or name one with cwd",
            grpc.StatusCode.INVALID_ARGUMENT,
        ) from None


class Client:
    """Talk to the server found via `access` (a file, a state directory, or None for the default lookup)."""

    def __init__(self, access: str | os.PathLike[str] | Access | None = None, timeout: float = DEFAULT_TIMEOUT):
        if isinstance(access, Access):
            self.access_file = None
            self.access = access
        else:
            self.access_file = find_access_file(access)
            self.access = read_access(self.access_file)
        self.timeout = timeout
        self._channel, self._stub = sync_stub(self.access)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None

    def _error(self, err: grpc.RpcError) -> ClientError:
        code = err.code()  # type: ignore[attr-defined]
        details = err.details() or code.name  # type: ignore[attr-defined]
        if code == grpc.StatusCode.UNAVAILABLE:
            where = f" (access file: {self.access_file})" if self.access_file else ""
            if self.access.tls and is_handshake_failure(details):
                pinned = f"the access file {self.access_file}" if self.access_file else "the access given"
                return ClientError(
                    f"the server at {self.access.address} does not hold the certificate pinned in {pinned} (a "
                    "server restarted with another state directory, or another program on that port): use the "
                    "access.toml that the server wrote",
                    code,
                )
            if not self.access.tls:  # a TLS server closes plaintext connections as if it were not there
                return ClientError(
                    f"cannot reach the tqhpc server at {self.access.address}{where} in plaintext, as its access file "
                    "says (tls = false): is `tqhpc server --insecure` running there?",
                    code,
                )
            return ClientError(
                f"cannot reach the tqhpc server at {self.access.address}{where}: is `tqhpc server` running?", code
            )
        return ClientError(details, code)

    # --- tasks -------------------------------------------------------------------------------------------------

    def submit(
        self,
        command: str,
        container: str = "",
        *,
        name: str = "",
        retry: int = 0,
        after: Iterable[int] = (),
        slots: int = 1,
        array_id: str = "",
        timeout: float = 0.0,
        memory_limit: int = 0,
        time_request: float = 0.0,
        cwd: str | os.PathLike[str] = "",
    ) -> int:
        """Queue one command (run as `sh -c COMMAND`); return its task id.

        The task runs in this process's current directory, as under Slurm, or in `cwd` (relative to the current
        directory); the directory must exist on the worker's node, or the task fails.

        `retry`: re-run a failed attempt up to this many times. `after`: wait (status W) until these tasks succeed;
        if one fails or is cancelled, this one is cancelled. `slots`: how much of a worker's concurrency it takes.
        `timeout` (seconds of wall-clock time) and `memory_limit` (bytes of RSS over all the task's processes) are
        limits the worker holds the task to: over one, it kills the task's whole process tree and the task fails.
        `time_request`: the seconds it is expected to run at most; a Slurm worker with less walltime left never
        gets it (0: not declared).
        """
        spec = TaskSpec(
            command, container, name, retry, tuple(after), (), slots, array_id, timeout, memory_limit, time_request,
            os.fspath(cwd),
        )  # fmt: skip
        return self._call(self._stub.SubmitTask, spec.to_message(_caller_cwd([spec]))).task_id

    def submit_many(self, specs: Iterable[SpecLike]) -> list[int]:
        """Queue many tasks (TaskSpec, command strings, or dicts of TaskSpec fields); return their ids in order.

        They go in batches of up to 10,000 per call, each stored in one transaction; a refused batch raises and
        leaves the batches before it queued (their ids are in the error's `submitted`). Each task runs in its
        spec's `cwd`, by default the current directory of this process when it submits."""
        items = [as_spec(item) for item in specs]
        caller_cwd = _caller_cwd(items)
        ids: list[int] = []
        for offset, chunk in batches(items, len(caller_cwd)):
            try:
                message = batch_message(offset, chunk, ids, caller_cwd)
            except ValueError as err:
                raise ClientError(str(err), grpc.StatusCode.INVALID_ARGUMENT) from None
            try:
                reply = self._call(self._stub.SubmitTasks, message)
            except ClientError as err:
                if ids:
                    err.args = (f"{err} ({len(ids)} tasks of earlier batches were queued: {ids[0]}..{ids[-1]})",)
                err.submitted = list(ids)  # type: ignore[attr-defined]
                raise
            ids.extend(reply.task_ids)
        return ids

    def letters(self, task_ids: Sequence[int], *, allow_unknown: bool = False) -> str:
        """The status letters of many tasks in one small call per 50,000 ids; unknown ids are refused, or with
        `allow_unknown` shown as "?"."""
        letters = []
        for start in range(0, len(task_ids), STATUS_POLL_CHUNK):
            chunk = list(task_ids[start : start + STATUS_POLL_CHUNK])
            letters.append(self._call(self._stub.GetTaskStatuses, pb.TaskIds(task_ids=chunk)).letters)
        text = "".join(letters)
        if "?" in text and not allow_unknown:
            missing = [str(task_ids[i]) for i, letter in enumerate(text) if letter == "?"][:5]
            raise ClientError(f"no task {', '.join(missing)}", grpc.StatusCode.NOT_FOUND)
        return text

    def status(self, task_ids: Iterable[int]) -> list[TaskResult]:
        """The current result of each task, in the order asked."""
        wanted = list(task_ids)
        if not wanted:
            return []
        found = {t.task_id: t for t in self.tasks(ids=wanted)}
        missing = [str(t) for t in wanted if t not in found][:5]
        if missing:
            raise ClientError(f"no task {', '.join(missing)}", grpc.StatusCode.NOT_FOUND)
        return [TaskResult.of(found[t]) for t in wanted]

    def wait(self, task_ids: Iterable[int], timeout: float | None = None, progress: bool = True) -> list[TaskResult]:
        """Block until every task is finished (S, F or X) and return their results in order.

        A progress bar is drawn on stderr when it is a terminal (and `progress` is true); raises
        `tqhpc.waiting.WaitTimeout` (a TimeoutError) if `timeout` seconds pass first."""
        wanted = list(task_ids)
        wait_letters(self.letters, wanted, timeout=timeout, progress=progress)
        return self.status(wanted)

    def sweep(
        self,
        template: str,
        params: Iterable[Mapping[str, Any]] | None = None,
        *,
        name: str = "",
        container: str = "",
        retry: int = 0,
        slots: int = 1,
        cwd: str | os.PathLike[str] = "",
        **axes: Sequence[Any],
    ) -> Sweep:
        """Submit `template` once per combination: `sweep("run {a} {b}", a=[1, 2], b=[3, 4])` (the cartesian
        product) or `sweep("run {a}", [{"a": 1}, {"a": 5}])`. Values are shell-quoted into the `{fields}`.
        The tasks run in the current directory, or in `cwd`.
        Returns a `Sweep` handle: wait(), failures(), rerun_failed()."""
        return submit_sweep(
            self, template, params, name=name, container=container, retry=retry, slots=slots, cwd=cwd, axes=axes
        )

    def follow(self, task_id: int) -> Iterator[LogChunk]:
        """The task's output, live, until it ends."""
        return self.logs(task_id, follow=True)

    def cancel(self, task_ids: Iterable[int] = (), *, name: str = "", status: str = "") -> list[int]:
        """Cancel tasks (by ids, or every task with this name and/or status letters); return those cancelled.

        Waiting, pending and assigned tasks become X at once; running ones are killed on their worker."""
        request = pb.TaskSelection(task_ids=list(task_ids), name=name, status_filter=status)
        return list(self._call(self._stub.CancelTasks, request).task_ids)

    def retry(self, task_ids: Iterable[int] = (), *, name: str = "", status: str = "") -> list[int]:
        """Run failed or cancelled tasks again (a new attempt; the earlier one's logs are kept as ID.N.out).
        Return the ids sent back to the queue; their dependents cancelled because of them wait again."""
        request = pb.TaskSelection(task_ids=list(task_ids), name=name, status_filter=status)
        return list(self._call(self._stub.RetryTasks, request).task_ids)

    def prune(self, older_than: float, *, name: str = "", status: str = "") -> list[int]:
        """Remove ended tasks (S, F, X; or those of `status`) that ended more than `older_than` seconds ago, with
        their output; a task that unfinished tasks depend on is kept. Return the ids removed."""
        request = pb.PruneRequest(older_than_seconds=older_than, name=name, status=status)
        return list(self._call(self._stub.PruneTasks, request).task_ids)

    def task(self, task_id: int) -> TaskInfo:
        return TaskInfo.from_message(self._call(self._stub.GetTask, pb.TaskId(task_id=task_id)))

    def tasks(self, status: str | None = None, *, name: str = "", ids: Iterable[int] = ()) -> list[TaskInfo]:
        """Every task, or those whose status letter is in `status` ("F", "SF"), with this name, among these ids."""
        return list(self.iter_tasks(status, name=name, ids=ids))

    def iter_tasks(
        self, status: str | None = None, *, name: str = "", ids: Iterable[int] = (), after: int = 0
    ) -> Iterator[TaskInfo]:
        """`tasks()` one task at a time, in id order, as the server's pages arrive: the first come at once, and a
        listing of millions is never held whole. `after`: only tasks with a larger id."""
        for page in self.task_pages(status, name=name, ids=ids, after=after):
            yield from page.tasks

    def task_pages(
        self,
        status: str | None = None,
        *,
        name: str = "",
        ids: Iterable[int] = (),
        after: int = 0,
        page_size: int = 0,
    ) -> Iterator[TaskPage]:
        """The listing as the server sends it: pages of tasks in id order, the last one marked `last`."""
        for message in self.page_messages(status, name=name, ids=ids, after=after, page_size=page_size):
            yield TaskPage([TaskInfo.from_message(task) for task in message.tasks], message.last)

    def page_messages(
        self,
        status: str | None = None,
        *,
        name: str = "",
        ids: Iterable[int] = (),
        after: int = 0,
        page_size: int = 0,
    ) -> Iterator[pb.TaskPage]:
        """`task_pages()` as the wire messages themselves, for a reader that needs a few fields of each task (as
        `tqhpc stats` does) and would spend most of its time building records it drops."""
        request = pb.ListTasksRequest(name_filter=name, task_ids=list(ids), after_task_id=after, page_size=page_size)
        if status is not None:
            request.status_filter = status
        # No deadline: a listing read by a slow consumer (a pager) may take as long as it likes.
        call = self._stub.StreamTasks(request, timeout=None)
        try:
            yield from read_ahead(call, PAGES_AHEAD)
        except grpc.RpcError as err:
            raise self._error(err) from None
        finally:
            call.cancel()  # a reader that stopped early: the server stops reading too

    def task_stats_pages(
        self, status: str | None = None, *, name: str = "", page_size: int = 50_000
    ) -> Iterator[pb.TaskStatsPage]:
        """The listing reduced to what `tqhpc stats` sums up (status, failure, slots, end, latest usage), in
        columns, a page at a time. A server older than this RPC answers UNIMPLEMENTED (a ClientError)."""
        request = pb.ListTasksRequest(name_filter=name, page_size=page_size)
        if status is not None:
            request.status_filter = status
        call = self._stub.TaskStatsPages(request, timeout=None)
        try:
            yield from read_ahead(call, PAGES_AHEAD)
        except grpc.RpcError as err:
            raise self._error(err) from None
        finally:
            call.cancel()

    def logs(self, task_id: int, *, follow: bool = False) -> Iterator[LogChunk]:
        """The task's output as stored; with follow, live output too until the task ends."""
        request = pb.TaskId(task_id=task_id, snapshot=not follow)
        try:
            for message in self._stub.StreamTaskLogs(request, timeout=None if follow else self.timeout):
                yield LogChunk(message.task_id, message.log_type, message.log_bytes or message.log_text.encode())
        except grpc.RpcError as err:
            raise self._error(err) from None

    def write_logs(self, task_id: int, *, follow: bool = False, stdout: Any = None, stderr: Any = None) -> None:
        """Copy a task's output to this process's stdout and stderr, byte for byte."""
        out = stdout or sys.stdout.buffer
        err = stderr or sys.stderr.buffer
        for chunk in self.logs(task_id, follow=follow):
            target = out if chunk.stream == "O" else err
            target.write(chunk.data)
            target.flush()

    def overview(self, *, name: str = "", failures: int = 0, timeout: float | None = None) -> Overview:
        """Counts by status, how many tasks ended lately, the latest `failures` failed tasks (0: 5, at most 50) and
        the live workers, of every task or of those named `name`; cheap enough to ask every second."""
        request = pb.OverviewRequest(name=name, failures=failures)
        try:
            return Overview.from_message(self._call(self._stub.GetOverview, request, timeout))
        except ClientError as err:
            if err.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            raise ClientError(
                f"the server at {self.access.address} has no overview to give: it runs an older tqhpc; upgrade it "
                "and restart it",
                err.code,
            ) from None

    # --- workers -----------------------------------------------------------------------------------------------

    def workers(self, *, include_retired: bool = True) -> list[WorkerInfo]:
        """Every worker the server has known, oldest first, with its `state`; only the live ones (starting, running,
        draining) with `include_retired=False`."""
        request = pb.ListWorkersRequest(include_retired=include_retired)
        return [WorkerInfo.from_message(w) for w in self._call(self._stub.ListWorkers, request).workers]

    def create_workers(self, number: int, *, provider: str = "local", concurrency: int = 0,
                       prefetch: int | None = 0, flavor: str = "") -> list[int]:  # fmt: skip
        """Start `number` workers. For Slurm, `flavor` names the pool profile ("": the default one), a concurrency
        of 0 and a prefetch of None take the profile's."""
        request = pb.WorkerRequest(
            provider=provider,
            number=number,
            concurrency=concurrency,
            prefetch=prefetch or 0,
            prefetch_from_profile=prefetch is None,
            flavor=flavor,
        )
        return list(self._call(self._stub.CreateWorker, request).worker_ids)

    def delete_worker(self, worker_id: int) -> None:
        self._call(self._stub.DeleteWorker, pb.WorkerId(worker_id=worker_id))

    def slurm_pools(self) -> list[pb.SlurmPool]:
        """The server's Slurm pool profiles and what automatic allocation does with them."""
        return list(self._call(self._stub.ListSlurmPools, pb.SlurmPoolListRequest()).pools)

    def resume_slurm_pool(self, name: str) -> pb.SlurmPool:
        """Let automatic allocation submit jobs for a pool it paused after repeated submission failures."""
        return self._call(self._stub.ResumeSlurmPool, pb.SlurmPoolName(name=name))

    def update_worker(
        self, worker_id: int, *, concurrency: int | None = None, prefetch: int | None = None
    ) -> WorkerInfo:
        request = pb.WorkerUpdate(worker_id=worker_id)
        if concurrency is not None:
            request.concurrency = concurrency
        if prefetch is not None:
            request.prefetch = prefetch
        return WorkerInfo.from_message(self._call(self._stub.UpdateWorker, request))

"""`tqhpc.Client`: the blocking Python API over the gRPC service, used by the CLI and by users' scripts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ._proto import pb
from .access import Access, find_access_file, read_access
from .channel import sync_stub
from .records import TaskInfo, WorkerInfo

DEFAULT_TIMEOUT = 60.0


class ClientError(RuntimeError):
    """The server refused a call or could not be reached; the message is one line meant for the user."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LogChunk:
    task_id: int
    stream: str  # "O" stdout, "E" stderr
    data: bytes


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
            return ClientError(
                f"cannot reach the tqhpc server at {self.access.address}{where}: is `tqhpc server` running?", code
            )
        return ClientError(details, code)

    # --- tasks -------------------------------------------------------------------------------------------------

    def submit(self, command: str, container: str = "", *, time_request: float = 0.0) -> int:
        """Queue one command (run as `sh -c COMMAND`); return its task id.

        `time_request`: the seconds it is expected to run at most; a Slurm worker with less walltime left never
        gets it (0: not declared).
        """
        request = pb.TaskRequest(command=command, container=container, time_request=time_request)
        return self._call(self._stub.SubmitTask, request).task_id

    def task(self, task_id: int) -> TaskInfo:
        return TaskInfo.from_message(self._call(self._stub.GetTask, pb.TaskId(task_id=task_id)))

    def tasks(self, status: str | None = None) -> list[TaskInfo]:
        """Every task, or those whose status letter is in `status` ("F", "SF")."""
        request = pb.ListTasksRequest() if status is None else pb.ListTasksRequest(status_filter=status)
        return [TaskInfo.from_message(t) for t in self._call(self._stub.ListTasks, request).tasks]

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

    # --- workers -----------------------------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo.from_message(w) for w in self._call(self._stub.ListWorkers, pb.ListWorkersRequest()).workers]

    def create_workers(self, number: int, *, provider: str = "local", concurrency: int = 0, prefetch: int = 0,
                       flavor: str = "") -> list[int]:  # fmt: skip
        request = pb.WorkerRequest(
            provider=provider, number=number, concurrency=concurrency, prefetch=prefetch, flavor=flavor
        )
        return list(self._call(self._stub.CreateWorker, request).worker_ids)

    def delete_worker(self, worker_id: int) -> None:
        self._call(self._stub.DeleteWorker, pb.WorkerId(worker_id=worker_id))

    def slurm_pools(self) -> list[pb.SlurmPool]:
        """issue 4: the server's Slurm pool profiles and what automatic allocation does with them."""
        return list(self._call(self._stub.ListSlurmPools, pb.SlurmPoolListRequest()).pools)

    def update_worker(
        self, worker_id: int, *, concurrency: int | None = None, prefetch: int | None = None
    ) -> WorkerInfo:
        request = pb.WorkerUpdate(worker_id=worker_id)
        if concurrency is not None:
            request.concurrency = concurrency
        if prefetch is not None:
            request.prefetch = prefetch
        return WorkerInfo.from_message(self._call(self._stub.UpdateWorker, request))

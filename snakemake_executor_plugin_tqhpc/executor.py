"""The executor: Snakemake hands it jobs that are ready, it queues them as tqhpc tasks and reports how they end.

Each job becomes one task whose command is the Snakemake call for that one job (as with Slurm, where it becomes one
sbatch job), run in the workflow's directory on whichever worker takes it. Jobs that become ready together go in
one `submit_many` call, and every status check asks about all running jobs in one call, so ten thousand jobs cost
the server a handful of calls a second, not ten thousand.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface

from tqhpc.access import AccessError
from tqhpc.client import Client, ClientError
from tqhpc.records import TaskInfo
from tqhpc.specs import TaskSpec
from tqhpc.status import Status

from .settings import ExecutorSettings
from .tasks import failure_message, task_name, task_resources

STDERR_KEPT_BYTES = 64 * 1024
"""How much of a failed task's stderr is read back: its tail is all that Snakemake's log shows."""


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        self.settings: ExecutorSettings = self.workflow.executor_settings
        if not self.settings.status_interval > 0:
            raise WorkflowError(
                f"tqhpc: --tqhpc-status-interval must be more than 0 seconds, not {self.settings.status_interval:g}"
            )
        self.client = _connect(self.settings.access)
        self.next_seconds_between_status_checks = self.settings.status_interval
        self._server_unreachable = False
        # Every task submitted and not yet seen ending. Snakemake's own list of active jobs is empty while a status
        # check runs (it takes them out and puts back those still running), so an interrupt then would cancel
        # nothing and leave the tasks running: cancel uses this record as well.
        self._unfinished: set[int] = set()
        self._unfinished_lock = threading.Lock()
        self._warn_without_workers()

    def _warn_without_workers(self) -> None:
        """Check once that the server answers, so a wrong access file fails at once and not at the first job; and
        say so when no worker is there to run anything, the usual reason for a workflow that never moves."""
        try:
            live = self.client.workers(include_retired=False)
        except ClientError as err:
            self.client.close()
            raise WorkflowError(f"tqhpc: {err}") from None
        if not live:
            self.logger.warning(
                "tqhpc: no worker is connected to the server: jobs wait until one starts (`tqhpc worker`)"
            )

    # --- submission ----------------------------------------------------------------------------------------------

    def run_job(self, job: JobExecutorInterface) -> None:
        self._submit([job])

    def run_jobs(self, jobs: list[JobExecutorInterface]) -> None:
        for job in jobs:
            self.run_job_pre(job)
        self._submit(jobs)

    def _submit(self, jobs: list[JobExecutorInterface]) -> None:
        """Queue the jobs as tasks in one call; if the server refuses, every one of them fails with its answer."""
        if not jobs:
            return
        specs = [self._task_spec(job) for job in jobs]
        try:
            task_ids = self.client.submit_many(specs)
        except ClientError as err:
            queued = list(getattr(err, "submitted", []))
            for job, task_id in zip(jobs, queued, strict=False):
                self._report_submitted(job, task_id)
            for job in jobs[len(queued) :]:
                self.report_job_error(SubmittedJobInfo(job), msg=f"tqhpc refused the job: {err}. ")
            return
        for job, task_id in zip(jobs, task_ids, strict=True):
            self._report_submitted(job, task_id)

    def _report_submitted(self, job: JobExecutorInterface, task_id: int) -> None:
        with self._unfinished_lock:
            self._unfinished.add(task_id)
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=str(task_id), aux={"task_id": task_id}))

    def _task_spec(self, job: JobExecutorInterface) -> TaskSpec:
        resources = task_resources(job.threads, job.resources, timeout_from_runtime=self.settings.timeout_from_runtime)
        return TaskSpec(
            command=self.format_job_exec(job),
            name=task_name(self.settings.name_prefix, job.name),
            slots=resources.slots,
            memory_limit=resources.memory_limit,
            time_request=resources.time_request,
            timeout=resources.timeout,
            cwd=str(self.workflow.workdir_init),
        )

    # --- status ----------------------------------------------------------------------------------------------------

    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        """One call for every active job's task; finished ones are reported, the others handed back to Snakemake.
        While the server cannot be reached the jobs stay active (it may be restarting), with one warning."""
        if not active_jobs:
            return
        task_ids = [_task_id(job_info) for job_info in active_jobs]
        async with self.status_rate_limiter:
            try:
                found = {task.task_id: task for task in self.client.tasks(ids=task_ids)}
            except ClientError as err:
                if not self._server_unreachable:
                    self.logger.warning(f"tqhpc: cannot check the jobs' tasks, trying again: {err}")
                self._server_unreachable = True
                for job_info in active_jobs:
                    yield job_info
                return
        if self._server_unreachable:
            self.logger.info("tqhpc: the server answers again")
            self._server_unreachable = False
        for job_info, task_id in zip(active_jobs, task_ids, strict=True):
            if not self._concluded(job_info, task_id, found.get(task_id)):
                yield job_info

    def _concluded(self, job_info: SubmittedJobInfo, task_id: int, task: TaskInfo | None) -> bool:
        """Report the job's end if its task has ended (or is gone); whether it did."""
        if task is not None and not task.status.terminal:
            return False
        with self._unfinished_lock:
            self._unfinished.discard(task_id)
        if task is None:
            self.report_job_error(job_info, msg=f"tqhpc task {task_id} is no longer known to the server. ")
        elif task.status == Status.SUCCEEDED:
            self.report_job_success(job_info)
        else:
            self.report_job_error(job_info, msg=self._failure(task))
        return True

    def _failure(self, task: TaskInfo) -> str:
        try:
            stderr = _stderr_of(self.client, task.task_id)
        except ClientError as err:
            stderr = f"(its output could not be read: {err})"
        return failure_message(task.task_id, task.status.label, task.exit_code, task.failure, task.reason, stderr)

    # --- cancel and shutdown ---------------------------------------------------------------------------------------

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        """Snakemake was interrupted: cancel the jobs' tasks, so that none starts, and running ones are killed; those
        of jobs taken out of `active_jobs` by a status check running at that moment too."""
        with self._unfinished_lock:
            task_ids = sorted(self._unfinished.union(_task_id(job_info) for job_info in active_jobs))
        if not task_ids:
            return
        try:
            cancelled = self.client.cancel(task_ids)
        except ClientError as err:
            self.logger.error(f"tqhpc: could not cancel tasks {_id_list(task_ids)}: {err}")
            return
        self.logger.info(f"tqhpc: cancelled {len(cancelled)} task(s)")

    def shutdown(self) -> None:
        super().shutdown()
        self.client.close()


def _connect(access: str | None) -> Client:
    """A client for the server named by `--tqhpc-access`, else by $TQHPC_ACCESS or the default state directory."""
    try:
        return Client(access)
    except AccessError as err:
        raise WorkflowError(f"tqhpc: {err}") from None


def _task_id(job_info: SubmittedJobInfo) -> int:
    aux: dict[str, Any] = job_info.aux or {}
    return int(aux.get("task_id", job_info.external_jobid))


def _stderr_of(client: Client, task_id: int) -> str:
    """The end of the task's stderr (its last attempt's), decoded."""
    kept: collections.deque[bytes] = collections.deque()
    size = 0
    for chunk in client.logs(task_id):
        if chunk.stream != "E":
            continue
        kept.append(chunk.data)
        size += len(chunk.data)
        while size - len(kept[0]) >= STDERR_KEPT_BYTES:
            size -= len(kept.popleft())
    return b"".join(kept).decode(errors="replace")


def _id_list(task_ids: Iterable[int]) -> str:
    ids = list(task_ids)
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")

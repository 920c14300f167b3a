"""A worker started by hand in an sbatch script, stopped by Slurm: no task it was running may end `S`.

`scancel` and a job's time limit send SIGCONT and SIGTERM to every process of the job, the tasks' processes too,
then SIGKILL after KillWait. A task's `sleep` dies, its shell goes on and exits 0: that exit says nothing about the
task. The worker must hand such tasks back (they run again elsewhere), never report them done.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, Workers, wait_until
from slurm_cluster import require_cluster, scancel, squeue_jobs

from tqhpc import Client, Status

SLEEP = 8
TASK = f"sleep {SLEEP}; echo ok"


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    return require_cluster()


@pytest.fixture
def jobs(slurm_env: dict[str, str]) -> Iterator[list[str]]:
    """Job ids a test submitted; whatever is still queued or running at the end is cancelled."""
    submitted: list[str] = []
    yield submitted
    for job in squeue_jobs(slurm_env, submitted):
        scancel(slurm_env, job)


def submit_worker_job(
    server: ServerProcess, tmp_path: Path, env: dict[str, str], *worker_args: str, exec_worker: bool = True
) -> str:
    """A hand-written sbatch script that runs `python -m tqhpc worker` (this venv's Python); returns the job id."""
    script = tmp_path / "worker.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --time=10:00 --cpus-per-task=1 --job-name=tqhpc-stop-test\n"
        f"#SBATCH --output={tmp_path / 'job-%j.out'}\n"
        f"{'exec ' if exec_worker else ''}{sys.executable} -m tqhpc worker --access {server.access_file} "
        f"--ping-interval 0.2 --scratch-dir {tmp_path / 'job-scratch'} {' '.join(worker_args)}\n"
    )
    result = subprocess.run(
        ["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip().split(";")[0]


def job_output(tmp_path: Path, job: str) -> str:
    path = tmp_path / f"job-{job}.out"
    return path.read_text(errors="replace") if path.exists() else ""


def test_scancel_hands_back_running_tasks_and_they_run_again(server, client: Client, workers: Workers, tmp_path,
                                                            slurm_env, jobs) -> None:  # fmt: skip
    ids = [client.submit(TASK) for _ in range(4)]
    job = submit_worker_job(server, tmp_path, slurm_env, "--concurrency", "4", "--prefetch", "0")
    jobs.append(job)
    wait_until(
        lambda: all(client.task(i).status == Status.RUNNING for i in ids),
        60,
        what=lambda: f"all four tasks to run in job {job}: {[client.task(i).status for i in ids]}",
    )
    time.sleep(1)  # each shell is in its `sleep` now
    scancel(slurm_env, job)
    wait_until(lambda: not squeue_jobs(slurm_env, [job]), 30, what=f"job {job} to end")
    wait_until(
        lambda: all(client.task(i).status != Status.RUNNING for i in ids),
        15,
        what=lambda: f"the tasks to leave R: {[client.task(i).status for i in ids]}",
    )
    cut = {i: client.task(i) for i in ids}
    assert not [t for t in cut.values() if t.status == Status.SUCCEEDED], (cut, job_output(tmp_path, job))
    for task in cut.values():
        assert task.status == Status.PENDING, (task, job_output(tmp_path, job))
        assert f"got SIGTERM in Slurm job {job}" in task.reason and "handed back" in task.reason, task.reason
        (attempt,) = client.task(task.task_id).attempt_usage
        assert attempt.exit_code is None and attempt.failure == "handed_back", attempt
        assert attempt.ended_at > attempt.started_at
    assert "4 handed back to the queue" in job_output(tmp_path, job)

    workers.start("--concurrency", "4")
    wait_until(lambda: all(client.task(i).status.terminal for i in ids), 60, what="the tasks to run again")
    for task_id in ids:
        task = client.task(task_id)
        assert task.status == Status.SUCCEEDED and task.attempts == 2, task
        assert task.usage is not None and task.usage.wall_time >= SLEEP, task.usage
        assert b"".join(chunk.data for chunk in client.logs(task_id)) == b"ok\n"


def test_the_job_time_limit_hands_back_running_tasks(server, client: Client, workers: Workers, tmp_path, slurm_env,
                                                     jobs) -> None:  # fmt: skip
    """The time limit is cut to one minute under a running worker, so the worker does not see it coming (its own
    drain before the end is not involved): Slurm's SIGTERM at the limit is all it gets. Slurm checks time limits
    every 30 s, so this takes one to one and a half minutes."""
    flag = tmp_path / "go"
    ids = [client.submit(f"while [ ! -e {flag} ]; do sleep 0.2; done; echo ok") for _ in range(3)]
    job = submit_worker_job(server, tmp_path, slurm_env, "--concurrency", "3", "--prefetch", "0",
                            "--walltime-margin", "0")  # fmt: skip
    jobs.append(job)
    wait_until(lambda: all(client.task(i).status == Status.RUNNING for i in ids), 60, what="the tasks to run")
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=1"], env=slurm_env, check=True, timeout=30)
    wait_until(lambda: not squeue_jobs(slurm_env, [job]), 120, interval=0.5, what=f"job {job} to reach its limit")
    wait_until(lambda: all(client.task(i).status != Status.RUNNING for i in ids), 15, what="the tasks to leave R")
    for task_id in ids:
        task = client.task(task_id)
        assert task.status == Status.PENDING, (task, job_output(tmp_path, job))
        assert f"got SIGTERM in Slurm job {job}" in task.reason, task.reason
        (attempt,) = task.attempt_usage
        assert attempt.failure == "handed_back" and attempt.wall_time >= 50, attempt
    assert "DUE TO TIME LIMIT" in job_output(tmp_path, job)

    flag.touch()
    workers.start("--concurrency", "3")
    wait_until(lambda: all(client.task(i).status == Status.SUCCEEDED for i in ids), 30, what="the tasks to run again")
    assert all(b"".join(chunk.data for chunk in client.logs(i)) == b"ok\n" for i in ids)

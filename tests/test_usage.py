"""Resource usage and limits with real processes: usage of a task's process tree, limits that kill the whole tree,
per-attempt records, and each worker's host state with every ping."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import grpc
import psutil
import pytest
from conftest import wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client, Status
from tqhpc._proto import pb

MIB = 1 << 20
PYTHON = sys.executable


def _finished(client: Client, task_id: int, timeout: float = 60.0):
    return wait_until(
        lambda: (t := client.task(task_id)).status.terminal and t,
        timeout=timeout,
        what=lambda: f"task {task_id} to end: {client.task(task_id)}",
    )


def test_peak_rss_of_a_200_mib_task_is_within_15_percent(client: Client, workers) -> None:
    allocate = f"{PYTHON} -c \"import time; b = bytearray(b'x') * (200 * 1024 * 1024); time.sleep(1.5)\""
    task_id = client.submit(allocate)
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED, task
    peak = task.usage.peak_rss
    assert abs(peak - 200 * MIB) <= 0.15 * 200 * MIB, f"peak RSS {peak / MIB:.1f} MiB, wanted 200 MiB +- 15%"
    assert task.usage.last_rss > 0 and task.usage.samples >= 1


def test_a_small_task_is_not_charged_the_workers_own_memory(client: Client, workers) -> None:
    """Linux puts the forking process's memory into the child's ru_maxrss; a `sleep` must not show the worker's."""
    ids = [client.submit("sleep 1"), client.submit("true")]
    workers.start("--concurrency", "1")
    sleeper, trivial = (_finished(client, task_id) for task_id in ids)
    assert 0 < sleeper.usage.peak_rss < 10 * MIB, sleeper.usage
    assert trivial.usage.peak_rss < 10 * MIB, trivial.usage  # too short to sample: unknown (0) rather than wrong


def test_cpu_time_of_a_2_second_burner_is_within_20_percent(client: Client, workers) -> None:
    # The burner runs as a child of the shell, in the background, so the shell's own wait reaps it.
    burn = f'{PYTHON} -c "import time\nt = time.process_time()\nwhile time.process_time() - t < 2: pass" & wait'
    task_id = client.submit(burn)
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED, task
    cpu = task.usage.cpu_user + task.usage.cpu_system
    assert abs(cpu - 2.0) <= 0.4, f"CPU time {cpu:.2f} s, wanted 2 s +- 20%"
    assert task.usage.wall_time >= cpu * 0.8
    assert task.usage.final and task.usage.exit_code == 0


def test_a_task_over_its_timeout_is_killed_with_its_children(client: Client, workers, tmp_path: Path) -> None:
    # A background child, a child that left the process group with setsid, and the shell itself.
    command = "sleep 300 & echo $! > pids; setsid sleep 300 & echo $! >> pids; echo started; sleep 300"
    task_id = client.submit(command, timeout=2.0)
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.FAILED
    assert task.failure == "timeout" and "timeout of 2 s" in task.reason, task
    assert 1.5 <= task.usage.wall_time < 15, task.usage
    pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2

    def all_gone() -> bool:
        return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)

    wait_until(all_gone, timeout=10, what=f"the task's children {pids} to be killed")
    err = b"".join(c.data for c in client.logs(task_id) if c.stream == "E").decode()
    assert "timeout of 2 s" in err


def test_a_task_over_its_memory_limit_is_killed(client: Client, workers) -> None:
    grow = f"{PYTHON} -c \"import time; b = bytearray(b'x') * (300 * 1024 * 1024); time.sleep(60)\""
    task_id = client.submit(grow, memory_limit=100 * MIB)
    workers.start("--concurrency", "1", "--usage-interval", "0.2")
    task = _finished(client, task_id)
    assert (task.status, task.failure) == (Status.FAILED, "memory"), task
    assert "over its limit of 100 MiB" in task.reason
    assert task.usage.wall_time < 30


def test_worker_default_timeout_applies_to_tasks_without_one(client: Client, workers) -> None:
    task_id = client.submit("sleep 60")
    workers.start("--concurrency", "1", "--default-timeout", "1")
    task = _finished(client, task_id)
    assert (task.status, task.failure) == (Status.FAILED, "timeout"), task


def test_running_task_carries_first_sample_and_attempts_are_kept(client: Client, workers) -> None:
    task_id = client.submit("sleep 3; exit 4")
    workers.start("--concurrency", "1", "--name", "sampler")
    running = wait_until(
        lambda: (t := client.task(task_id)).status == Status.RUNNING and t.usage and t.usage.samples and t,
        timeout=30,
        what="a first sample while running",
    )
    usage = running.usage
    assert (usage.worker_name, usage.attempt, usage.final) == ("sampler", 1, False)
    assert usage.hostname and usage.started_at > 0 and usage.worker_id == running.worker_id
    task = _finished(client, task_id)
    assert (task.status, task.exit_code, task.failure) == (Status.FAILED, 4, "exit_code")
    assert len(task.attempt_usage) == 1
    final = task.attempt_usage[0]
    assert final.final and final.exit_code == 4 and final.failure == "exit_code"
    assert 2.5 <= final.wall_time < 20 and final.ended_at >= final.started_at
    listed = next(t for t in client.tasks() if t.task_id == task_id)
    assert listed.usage == final and listed.attempt_usage == ()  # the listing carries only the latest


def test_slurm_job_id_is_recorded(client: Client, workers) -> None:
    task_id = client.submit("true")
    workers.start("--concurrency", "1", env=dict(os.environ, SLURM_JOB_ID="4242"))
    task = _finished(client, task_id)
    assert task.usage.slurm_job_id == "4242"


def test_workers_report_host_state_with_every_ping(server, client: Client, workers) -> None:
    workers.start("--concurrency", "1", "--apptainer-executable", "/nonexistent/apptainer")
    worker = wait_until(lambda: [w for w in client.workers() if w.stats], what="a ping with host stats")[0]
    first = worker.stats
    assert first.memory_available > 0 and first.memory_used > 0 and first.disk_free > 0
    assert first.load1 >= 0 and 0 <= first.cpu_percent <= 100 and first.sampled_at > 0
    wait_until(lambda: client.workers()[0].stats.sampled_at > first.sampled_at, what="a newer sample")
    task_id = client.submit("sleep 2")
    wait_until(lambda: client.workers()[0].stats.running_tasks == 1, what="running_tasks to count the task")
    _finished(client, task_id)
    table = run("workers", access=server.access_file)
    assert "LOAD" in table.stdout and "MEM AVAIL" in table.stdout and "GiB" in table.stdout
    (listed,) = json.loads(run("workers", "--json", access=server.access_file).stdout)
    assert listed["stats"]["memory_available"] > 0 and listed["stats"]["sampled_at"] >= first.sampled_at
    assert listed["container_capable"] is False and "/nonexistent/apptainer" in listed["container_note"]


def test_cli_shows_usage_and_sets_limits(server, client: Client, workers) -> None:
    submitted = run("submit", "--timeout", "1m30s", "--memory", "512M", "sleep 0.3", access=server.access_file)
    assert submitted.returncode == 0, submitted
    task_id = int(submitted.stdout)
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert (task.timeout, task.memory_limit) == (90.0, 512 * MIB)
    listing = run("tasks", access=server.access_file)
    assert "CPU" in listing.stdout and "PEAK RSS" in listing.stdout and "MiB" in listing.stdout
    for args in (("task", str(task_id)), ("task", "show", str(task_id))):
        shown = run(*args, access=server.access_file)
        assert shown.returncode == 0 and "usage (latest attempt):" in shown.stdout and "attempt 1:" in shown.stdout
    record = json.loads(run("task", "show", str(task_id), "--json", access=server.access_file).stdout)
    assert record["usage"]["final"] and record["attempt_usage"][0]["exit_code"] == 0
    assert record["timeout"] == 90.0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("submit", "--memory", "lots", "true"), "is not a size"),
        (("submit", "--timeout", "soon", "true"), "is not a duration"),
        (("task", "show", "x"), "expected one task id"),
    ],
)
def test_bad_limits_are_one_line_errors(server, args: tuple[str, ...], expected: str) -> None:
    assert_one_line_error(run(*args, access=server.access_file), expected, code=2)


@pytest.mark.parametrize("timeout", [-1.0, math.nan, math.inf])
def test_server_refuses_a_bad_timeout(stub, timeout: float) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitTask(pb.TaskRequest(command="true", timeout=timeout))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timeout must be a finite number" in caught.value.details()

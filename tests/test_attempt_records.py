"""An attempt that ends without its worker's final report still says how it really ended.

Its worker was lost, deleted, or killed the task and handed it back: the record is closed by the server at that
moment (wall time up to then, no exit code) with a failure kind and the reason, instead of keeping the worker's
first sample of a few milliseconds as if that were the whole attempt.
"""

from __future__ import annotations

import signal
import subprocess
import time

from conftest import Workers, start_server, tqhpc_command, wait_until

from tqhpc import Client, Status
from tqhpc._proto import pb
from tqhpc.records import ResourceUsage, TaskInfo


def _cut_attempt(client: Client, task_id: int) -> tuple[TaskInfo, ResourceUsage]:
    task = client.task(task_id)
    (attempt,) = task.attempt_usage
    assert attempt.exit_code is None and attempt.final, attempt
    assert abs(attempt.wall_time - (attempt.ended_at - attempt.started_at)) < 1e-6, attempt
    return task, attempt


def _run_for(client: Client, task_id: int, seconds: float) -> float:
    """Wait until the task runs, then `seconds` more; return when it started running (by this clock)."""
    wait_until(lambda: client.task(task_id).status == Status.RUNNING, what="the task to run")
    started = time.time()
    time.sleep(seconds)
    return started


def test_a_lost_workers_attempt_has_its_real_wall_time_and_why(client: Client, workers, server) -> None:
    task_id = client.submit("sleep 6")
    worker = workers.start("--concurrency", "1")
    started = _run_for(client, task_id, 2)
    killed_at = time.time()
    worker.send_signal(signal.SIGKILL)  # no goodbye: its closed session tells the server at once
    wait_until(lambda: client.task(task_id).status == Status.PENDING, 15, what="the task to be requeued")
    task, attempt = _cut_attempt(client, task_id)
    assert attempt.failure == "worker_lost" and "was lost: its connection to the server closed" in attempt.reason, (
        attempt
    )
    assert attempt.ended_at >= killed_at and attempt.wall_time >= killed_at - started, attempt
    assert task.reason == attempt.reason and task.crash_count == 1
    shown = subprocess.run(
        tqhpc_command("task", str(task_id), "--access", str(server.access_file)),
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    line = next(line for line in shown.splitlines() if line.startswith("attempt 1:"))
    assert "exit None, worker_lost: worker 1 was lost: its connection to the server closed" in line, shown


def test_a_task_killed_at_its_workers_stop_has_a_closed_record(client: Client, workers) -> None:
    task_id = client.submit("sleep 30")
    worker = workers.start("--concurrency", "1", "--grace-period", "0.5")
    started = _run_for(client, task_id, 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    task, attempt = _cut_attempt(client, task_id)
    assert task.status == Status.PENDING
    assert attempt.failure == "handed_back" and "killed after the 0.5 s grace period" in attempt.reason, attempt
    assert attempt.wall_time >= time.time() - started - 1.0, attempt  # ran until the kill, a moment ago


def test_a_deleted_workers_attempt_says_so(client: Client, workers) -> None:
    task_id = client.submit("sleep 30")
    workers.start("--concurrency", "1")
    _run_for(client, task_id, 1)
    (record,) = client.workers()
    client.delete_worker(record.worker_id)
    wait_until(lambda: client.task(task_id).status == Status.PENDING, what="the worker to hand the task back")
    task, attempt = _cut_attempt(client, task_id)
    assert task.status == Status.PENDING
    assert attempt.failure == "worker_deleted" and attempt.reason == f"worker {record.worker_id} was deleted"
    assert attempt.wall_time >= 1.0, attempt


def test_a_task_failed_at_the_crash_limit_has_a_closed_record(tmp_path) -> None:
    server = start_server(tmp_path / "limited", "--worker-timeout", "2", "--reap-interval", "0.3", "--crash-limit", "1")
    pool = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            task_id = client.submit("sleep 5")
            worker = pool.start("--concurrency", "1")
            _run_for(client, task_id, 1)
            worker.send_signal(signal.SIGKILL)  # its closed session tells the server at once
            wait_until(lambda: client.task(task_id).status == Status.FAILED, 15, what="the task to fail")
            task, attempt = _cut_attempt(client, task_id)
            assert task.failure == "crash_limit"
            assert attempt.failure == "worker_lost" and "its connection to the server closed" in attempt.reason, attempt
            assert attempt.wall_time >= 1.0, attempt  # it ran a second before the kill
    finally:
        pool.stop_all()
        server.stop()


def test_a_seed_worker_that_sent_no_usage_gets_a_record_when_it_hands_a_task_back(client: Client, stub) -> None:
    """A worker generated from the seed reports R without any figures: the server still writes the attempt."""
    task_id = client.submit("true")
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="seed", concurrency=1, hostname="node7")).worker_id
    (assigned,) = stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker_id)).tasks
    assert assigned.task_id == task_id
    stub.UpdateTaskStatus(pb.TaskStatusUpdate(task_id=task_id, new_status="R", worker_id=worker_id))
    time.sleep(0.3)
    stub.ReleaseTasks(pb.TaskRelease(worker_id=worker_id, task_ids=[task_id], reason="node drained"))
    back, attempt = _cut_attempt(client, task_id)
    assert back.status == Status.PENDING
    assert (attempt.attempt, attempt.worker_id, attempt.worker_name, attempt.hostname) == (
        1,
        worker_id,
        "seed",
        "node7",
    )
    assert attempt.failure == "handed_back" and attempt.reason == "node drained" and attempt.wall_time >= 0.3, attempt

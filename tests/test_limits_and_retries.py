"""Where per-task limits and resource usage meet sweeps and retries: limits travel in batch submits and
sweeps from the CLI, and a retried task keeps each attempt's resource summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest
from conftest import wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client, Status
from tqhpc._proto import pb
from tqhpc.specs import TaskSpec


def _all_finished(client: Client, ids: list[int], timeout: float = 60.0) -> list:
    def finished() -> list | None:
        tasks = [client.task(i) for i in ids]
        return tasks if all(t.status.terminal for t in tasks) else None

    return wait_until(finished, timeout=timeout, what=lambda: f"tasks {ids} to end: {[client.task(i) for i in ids]}")


def test_a_retried_task_keeps_every_attempts_usage(client: Client, workers, tmp_path: Path) -> None:
    marker = tmp_path / "second-time"
    task_id = client.submit(f"sleep 0.3; if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 3", retry=1)
    workers.start("--concurrency", "1")
    (task,) = _all_finished(client, [task_id])
    assert task.status == Status.SUCCEEDED and task.attempts == 2 and task.failure_retries == 1, task
    first, second = task.attempt_usage
    assert (first.attempt, first.exit_code, first.final) == (1, 3, True), first
    assert (second.attempt, second.exit_code, second.final) == (2, 0, True), second
    assert first.wall_time >= 0.25 and second.wall_time >= 0.25
    assert task.usage == second  # the record shows the attempt it describes
    assert task.failure == ""  # the failure kind of attempt 1 does not stick to the successful attempt


def test_a_short_failing_task_is_retried_at_once_on_the_same_worker(client: Client, workers) -> None:
    """Its start and its failure go in one report, and it is assigned to the same worker again in that report's
    store operation: the worker must still be sent each new attempt."""
    ids = [client.submit("exit 3", retry=3) for _ in range(4)]
    workers.start("--concurrency", "1", "--ping-interval", "30")
    tasks = _all_finished(client, ids, timeout=30)
    assert [(t.status, t.attempts) for t in tasks] == [(Status.FAILED, 4)] * 4, tasks


def test_the_last_failed_attempt_gives_the_failure_kind(client: Client, workers) -> None:
    task_id = client.submit("sleep 30", retry=1, timeout=0.5)
    workers.start("--concurrency", "1")
    (task,) = _all_finished(client, [task_id])
    assert task.status == Status.FAILED and task.attempts == 2, task
    assert task.failure == "timeout"
    assert [u.failure for u in task.attempt_usage] == ["timeout", "timeout"]


def test_limits_travel_in_a_batch_submit(client: Client, workers) -> None:
    ids = client.submit_many(
        [TaskSpec("sleep 30", timeout=0.5), TaskSpec("true", memory_limit=1 << 30), TaskSpec("sleep 30", timeout=0.5)]
    )
    stored = client.tasks(ids=ids)
    assert [(t.timeout, t.memory_limit) for t in stored] == [(0.5, 0), (0.0, 1 << 30), (0.5, 0)]
    workers.start("--concurrency", "3")
    tasks = _all_finished(client, ids)
    assert [(t.status, t.failure) for t in tasks] == [
        (Status.FAILED, "timeout"),
        (Status.SUCCEEDED, ""),
        (Status.FAILED, "timeout"),
    ]


def test_a_cli_sweep_carries_its_timeout(server, workers) -> None:
    submitted = run("submit", "--array", "1-2", "--timeout", "1s", "--", "sleep", "3{}", access=server.access_file)
    assert submitted.returncode == 0, submitted
    workers.start("--concurrency", "2")
    with Client(server.access_file) as client:
        ids = [t.task_id for t in client.tasks()]
        tasks = _all_finished(client, ids)
    assert [(t.status, t.failure, t.timeout) for t in tasks] == [(Status.FAILED, "timeout", 1.0)] * 2
    listed = json.loads(run("tasks", "--json", access=server.access_file).stdout)
    assert [t["failure"] for t in listed] == ["timeout", "timeout"]


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        ({"timeout": -1.0}, "timeout must be a finite number"),
        ({"timeout": float("nan")}, "timeout must be a finite number"),
        ({"memory_limit": 1 << 63}, "memory limit must be at most"),
    ],
)
def test_bad_limits_in_a_batch_name_the_task(stub, request_fields: dict, expected: str) -> None:
    batch = pb.TaskBatch(tasks=[pb.TaskRequest(command="true"), pb.TaskRequest(command="true", **request_fields)])
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitTasks(batch)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task 2 of the batch" in caught.value.details() and expected in caught.value.details()
    assert stub.ListTasks(pb.ListTasksRequest()).tasks == []  # refused whole


def test_a_bad_timeout_on_a_cli_sweep_is_one_line(server) -> None:
    result = run("submit", "--array", "1-3", "--timeout", "soon", "--", "true", access=server.access_file)
    assert_one_line_error(result, "--timeout", code=2)


def test_the_task_table_and_record_say_what_ended_a_task(server, workers) -> None:
    killed = run("submit", "--timeout", "0.5s", "sleep 5", access=server.access_file).stdout.strip()
    waiting = run("submit", "--slots", "8", "true", access=server.access_file).stdout.strip()
    workers.start("--concurrency", "2")
    with Client(server.access_file) as client:
        wait_until(lambda: client.task(int(killed)).status.terminal, what="the task over its timeout")
    table = run("tasks", access=server.access_file, env={"COLUMNS": "200"}).stdout
    rows = {line.split()[0]: line for line in table.splitlines()[1:] if line.split()[1] in ("F", "P")}
    assert "timeout" in rows[killed] and "F failed" in rows[killed]
    assert "needs 8 slots; largest live worker has 2" in rows[waiting]
    record = run("task", killed, access=server.access_file).stdout
    lines = [line for line in record.splitlines() if not line.startswith((" ", "usage", "attempt"))]
    fields = dict([*line.split(None, 1), ""][:2] for line in lines)
    assert fields["failure"] == "timeout" and fields["timeout"] == "0.500s" and fields["memory_limit"] == "none"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", fields["ended_at"])
    raw = json.loads(run("task", killed, "--json", access=server.access_file).stdout)
    assert isinstance(raw["ended_at"], float) and raw["timeout"] == 0.5  # --json keeps the numbers

"""Task flow on real workers: retries after failure, dependencies, cancel (pending and running), slots."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from conftest import output_of, wait_until

from tqhpc import Client, Status
from tqhpc.specs import TaskSpec


def _status(client: Client, task_id: int) -> Status:
    return client.task(task_id).status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failing_task_is_rerun_and_each_attempt_keeps_its_logs(server, client: Client, workers, tmp_path) -> None:
    counter = tmp_path / "count"
    # Fails twice, then succeeds: needs both re-runs of retry=2.
    command = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo attempt $n; [ $n -ge 3 ]"
    )
    task_id = client.submit(command, retry=2, name="flaky")
    never = client.submit("echo once; exit 4", retry=1)
    workers.start("--concurrency", "2")
    [result, failed] = client.wait([task_id, never], timeout=60, progress=False)
    assert result.status == Status.SUCCEEDED and result.exit_code == 0
    assert result.attempts == 3 and result.failure_retries == 2
    assert failed.status == Status.FAILED and failed.exit_code == 4
    assert failed.attempts == 2 and failed.failure_retries == 1
    logs = server.state_dir / "logs" / "0000"
    assert (logs / f"{task_id}.out").read_text() == "attempt 3\n"
    assert (logs / f"{task_id}.1.out").read_text() == "attempt 1\n"
    assert (logs / f"{task_id}.2.out").read_text() == "attempt 2\n"
    # Retry on request: the failed one runs again as a new attempt.
    assert client.retry(status="F") == [never]
    [again] = client.wait([never], timeout=60, progress=False)
    assert again.status == Status.FAILED and again.attempts == 3
    assert (logs / f"{never}.2.out").read_text() == "once\n"


def test_dependencies_wait_then_run_or_are_cancelled(client: Client, workers, tmp_path) -> None:
    marker = tmp_path / "first-done"
    first = client.submit(f"sleep 0.5; touch {marker}")
    second = client.submit(f"test -e {marker}", after=[first])  # fails unless it ran after the first
    bad = client.submit("exit 1")
    child = client.submit("echo never", after=[bad, first])
    grandchild = client.submit("echo never", after=[child])
    assert client.letters([second, child, grandchild]) == "WWW"
    workers.start("--concurrency", "3")
    results = client.wait([first, second, bad, child, grandchild], timeout=60, progress=False)
    assert [r.status for r in results] == [Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED,
                                           Status.CANCELLED]  # fmt: skip
    assert results[3].reason == f"dependency {bad} failed"
    assert results[4].reason == f"dependency {child} was cancelled"
    assert results[3].attempts == 0  # never ran
    # A task submitted after a failed one is cancelled at once.
    late = client.submit("echo never", after=[bad])
    assert client.task(late).status == Status.CANCELLED


def test_cancel_pending_and_running_tasks(client: Client, workers, tmp_path) -> None:
    started = tmp_path / "started"
    pid_file = tmp_path / "pid"
    running = client.submit(f"echo $$ > {pid_file}; touch {started}; sleep 60; echo not-killed")
    pending = client.submit_many([TaskSpec("sleep 60", name="backlog") for _ in range(3)])
    waiting = client.submit("echo never", after=[running])
    worker = workers.start("--concurrency", "1", "--prefetch", "1")
    wait_until(started.exists, 30, what="the first task to start")
    wait_until(lambda: _status(client, running) == Status.RUNNING, 30, what="R")
    assert client.cancel(name="backlog") == pending  # pending (one of them accepted by the worker) go at once
    assert client.letters(pending) == "XXX"
    began = time.monotonic()
    assert client.cancel([running]) == [running]
    assert _status(client, running) == Status.CANCELLED  # at once, before the worker has killed it
    assert _status(client, waiting) == Status.CANCELLED
    wait_until(lambda: f"task {running} was cancelled: killing it" in output_of(worker), 15, what="the kill")
    # The process is gone, the record stays X, and the worker is free for the next task.
    wait_until(lambda: not _alive(int(pid_file.read_text())), 15, what="the task's process to die")
    assert time.monotonic() - began < 15
    task = client.task(running)
    assert task.status == Status.CANCELLED and task.reason == "cancelled"
    after = client.submit("echo next")
    assert client.wait([after], timeout=30, progress=False)[0].status == Status.SUCCEEDED
    assert b"not-killed" not in b"".join(c.data for c in client.logs(running))
    assert client.cancel([running]) == []  # already finished: nothing to do
    assert worker.poll() is None


def test_cancel_and_retry_refuse_unclear_selections(client: Client) -> None:
    import pytest

    from tqhpc import ClientError

    with pytest.raises(ClientError, match="name the tasks"):
        client.cancel()
    with pytest.raises(ClientError, match="no task 77777"):
        client.cancel([77777])
    with pytest.raises(ClientError, match="unknown status letter"):
        client.retry(status="Q")


def test_slots_count_against_concurrency(client: Client, workers, tmp_path: Path) -> None:
    log = tmp_path / "overlap"
    big = client.submit(f"echo big-start >> {log}; sleep 1; echo big-end >> {log}", slots=2)
    small = client.submit_many([f"echo small >> {log}" for _ in range(2)])
    too_big = client.submit("echo huge", slots=4)
    workers.start("--concurrency", "2", "--prefetch", "0")
    results = client.wait([big, *small], timeout=60, progress=False)
    assert all(r.ok for r in results)
    lines = log.read_text().split()
    assert lines[:2] == ["big-start", "big-end"]  # nothing ran beside the 2-slot task on a 2-slot worker
    task = client.task(too_big)
    assert task.status == Status.PENDING
    [listed] = client.tasks(ids=[too_big])
    assert listed.reason == "needs 4 slots; largest live worker has 2"
    workers.start("--concurrency", "4")
    assert client.wait([too_big], timeout=60, progress=False)[0].ok


def test_kept_logs_are_named_by_the_attempt_that_wrote_them(server, client: Client, workers, tmp_path) -> None:
    """An attempt that wrote nothing leaves no file, and must not shift the numbers of the attempts after it."""
    marker = tmp_path / "ran-once"
    task_id = client.submit(f"if [ -e {marker} ]; then echo attempt 2; exit 5; fi; touch {marker}; exit 3", retry=1)
    workers.start("--concurrency", "1")
    [first] = client.wait([task_id], timeout=60, progress=False)
    assert (first.status, first.attempts) == (Status.FAILED, 2)
    assert client.retry([task_id]) == [task_id]
    [again] = client.wait([task_id], timeout=60, progress=False)
    assert again.attempts == 3
    logs = server.state_dir / "logs" / "0000"
    assert not (logs / f"{task_id}.1.out").exists()  # attempt 1 was silent
    assert (logs / f"{task_id}.2.out").read_text() == "attempt 2\n"
    assert (logs / f"{task_id}.out").read_text() == "attempt 2\n"  # attempt 3, the one shown


def test_a_follower_of_a_waiting_task_learns_at_once_that_it_was_cancelled(client: Client, workers) -> None:
    first = client.submit("sleep 1; exit 1")
    second = client.submit("echo never", after=[first])
    ended = threading.Event()

    def follow() -> None:
        for _ in client.follow(second):
            pass
        ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    workers.start("--concurrency", "1")
    [failed] = client.wait([first], timeout=60, progress=False)
    assert failed.status == Status.FAILED
    assert ended.wait(2.0), "the follower should end with the cancel, not at its next 5 s poll"
    assert client.task(second).status == Status.CANCELLED

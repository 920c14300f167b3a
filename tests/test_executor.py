"""`tqhpc.Executor` as a `concurrent.futures.Executor` over a real server and real workers: results as tasks end,
`wait`, `map`, cancel before and after a task starts, shutdown, and futures that end with an exception instead of
hanging when the server goes away."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, as_completed, wait

import pytest
from conftest import ServerProcess, wait_until

from tqhpc import Client, ClientError, Executor, Status, TaskFuture, TaskResult


def _output(client: Client, task_id: int) -> str:
    return "".join(chunk.text for chunk in client.logs(task_id))


def test_futures_complete_as_their_tasks_end(client: Client, workers) -> None:
    workers.start("--concurrency", "3")
    with Executor(client, poll_interval=0.1) as executor:
        slow = executor.submit("sleep 1.5; echo slow")
        failing = executor.submit("sleep 0.7; exit 3")
        fast = executor.submit("echo", "fast and quoted;")
        assert all(isinstance(f, TaskFuture) for f in (slow, failing, fast))
        order = list(as_completed([slow, failing, fast], timeout=30))
    assert order == [fast, failing, slow]
    result = fast.result()
    assert isinstance(result, TaskResult) and result.ok and result.task_id == fast.task_id
    assert _output(client, fast.task_id) == "fast and quoted;\n"
    # A failed task is a result, not an exception: its exit code and failure kind are there to read.
    failed = failing.result()
    assert not failed.ok and failed.status == Status.FAILED and failed.exit_code == 3 and failed.failure == "exit_code"
    assert failing.exception() is None
    assert slow.result().ok and slow.done() and not slow.cancelled()


def test_wait_first_completed_and_a_running_future_cannot_be_cancelled(client: Client, workers) -> None:
    workers.start("--concurrency", "2")
    with Executor(client, poll_interval=0.1) as executor:
        quick = executor.submit("true")
        long = executor.submit("sleep 30")
        done, not_done = wait([quick, long], timeout=30, return_when=FIRST_COMPLETED)
        assert done == {quick} and not_done == {long}
        wait_until(long.running, what="the long future to be running")
        assert long.cancel() is False and not long.cancelled()
        assert client.task(long.task_id).status == Status.RUNNING  # not killed
        client.cancel([long.task_id])  # killed by hand: the future ends with the cancelled task's result
    assert long.result().status == Status.CANCELLED


def test_cancel_of_a_queued_task_cancels_it_on_the_server(client: Client, workers) -> None:
    workers.start("--concurrency", "1", "--prefetch", "0")
    executor = Executor(client, poll_interval=0.1)
    blocker = executor.submit("sleep 30")
    queued = executor.submit("echo never")
    later = executor.submit("echo never either")
    wait_until(blocker.running, what="the first task to start")
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    assert client.task(queued.task_id).status == Status.CANCELLED
    assert queued in as_completed([queued], timeout=1)  # a cancelled future counts as completed at once

    # shutdown(cancel_futures=True): the queued tasks are cancelled on the server too, the running one goes on.
    executor.shutdown(wait=False, cancel_futures=True)
    assert later.cancelled() and client.task(later.task_id).status == Status.CANCELLED
    assert not blocker.done()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit("true")
    client.cancel([blocker.task_id])
    assert blocker.result(timeout=10).status == Status.CANCELLED


def test_map_runs_one_task_per_item_and_yields_results_in_order(client: Client, workers) -> None:
    workers.start("--concurrency", "2")
    items = ["a b", "c;d", "$HOME"]
    with Executor(client, poll_interval=0.1) as executor:
        results = list(executor.map("sleep 0.{}; echo {}", [3, 1, 0], items, timeout=30, name="mapped"))
        built = list(executor.map(lambda n: f"exit {n}", [0, 4], timeout=30))
    assert [r.task_id for r in results] == sorted(r.task_id for r in results)
    assert all(r.ok and r.name == "mapped" for r in results)
    assert [_output(client, r.task_id) for r in results] == [f"{item}\n" for item in items]  # shell-quoted
    assert [r.exit_code for r in built] == [0, 4]
    with pytest.raises(TypeError, match="command line"), Executor(client) as executor:
        executor.submit(print)  # type: ignore[arg-type]


def test_map_left_early_cancels_the_tasks_not_started(client: Client) -> None:
    """No worker: every task stays pending, so a timeout ends the loop and the rest are cancelled."""
    with Executor(client, poll_interval=0.1) as executor:
        results = executor.map("echo {}", range(3), timeout=0.5)
        with pytest.raises(TimeoutError):
            next(results)
    statuses = {t.status for t in client.tasks()}
    assert statuses == {Status.CANCELLED}


def test_shutdown_waits_for_every_future(client: Client, workers) -> None:
    workers.start("--concurrency", "2")
    executor = Executor(client, poll_interval=0.1)
    futures = [executor.submit(f"sleep 0.{i}") for i in range(1, 4)]
    combine = executor.submit("echo combined", after=futures)  # futures name the tasks they stand for
    executor.shutdown(wait=True)
    assert all(f.done() and f.result().ok for f in [*futures, combine])
    task = client.task(combine.task_id)
    assert list(task.after) == [f.task_id for f in futures]
    assert task.started_at >= max(client.task(f.task_id).ended_at for f in futures)


def test_one_status_poll_per_interval_for_all_pending_futures(client: Client, workers) -> None:
    """50 pending futures, polled every 0.2 s for 2 s: about 10 GetTaskStatuses calls, not 50 per interval."""
    calls: list[int] = []
    lock = threading.Lock()
    original = client._stub.GetTaskStatuses

    def counted(request, **kwargs):
        with lock:
            calls.append(len(request.task_ids))
        return original(request, **kwargs)

    client._stub.GetTaskStatuses = counted
    with Executor(client, poll_interval=0.2) as executor:
        futures = [executor.submit(f"echo {i}") for i in range(50)]
        time.sleep(2.0)
        with lock:
            seen = list(calls)
        workers.start("--concurrency", "4")
    assert 6 <= len(seen) <= 14, seen  # submitting 50 tasks took part of those 2 s: the first polls name fewer
    assert seen[-3:] == [50, 50, 50]  # one call names them all
    assert all(f.result().ok for f in futures)


def test_a_lost_server_ends_pending_futures_with_an_exception(server: ServerProcess, client: Client) -> None:
    executor = Executor(client, poll_interval=0.1, give_up_after=1.0)
    future = executor.submit("sleep 30")  # no worker: it stays pending
    server.stop(signal.SIGKILL)
    error = future.exception(timeout=15)
    assert isinstance(error, ClientError) and "cannot reach the tqhpc server" in str(error)
    with pytest.raises(ClientError):
        future.result()
    executor.shutdown(wait=True)  # nothing left to wait for: returns


def test_a_task_pruned_before_its_result_was_read_is_an_exception(client: Client, workers) -> None:
    workers.start("--concurrency", "1")
    with Executor(client, poll_interval=3.0) as executor:
        future = executor.submit("true")  # polled at once (pending), next in 3 s
        wait_until(lambda: client.task(future.task_id).status.terminal, what="the task to end")
        assert client.prune(0) == [future.task_id]
        error = future.exception(timeout=15)
    assert isinstance(error, ClientError) and "no longer exists" in str(error)


def test_an_executor_opens_and_closes_its_own_client(server: ServerProcess, workers) -> None:
    workers.start("--concurrency", "1")
    with Executor(server.access_file, poll_interval=0.1) as executor:
        assert executor.submit("true").result(timeout=30).ok
    with pytest.raises(ValueError, match="positive"):
        Executor(server.access_file, poll_interval=0)

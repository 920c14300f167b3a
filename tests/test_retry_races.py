"""Retry against the worker's life: a cancelled task whose worker has not killed it yet, that worker's loss, and the
crash count a retry by the user starts again."""

from __future__ import annotations

import signal

from conftest import Workers, start_server, wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client, Status


def _running(client: Client, task_id: int) -> None:
    wait_until(lambda: client.task(task_id).status == Status.RUNNING, 20, what=f"task {task_id} to run")


def test_a_task_still_being_killed_is_refused_then_retried_once_its_worker_is_lost(server, workers, client) -> None:
    task_id = client.submit("sleep 20")
    worker = workers.start("--concurrency", "1")
    _running(client, task_id)
    worker.send_signal(signal.SIGSTOP)  # it cannot kill the task, nor report the kill
    try:
        assert run("cancel", str(task_id), access=server.access_file).stdout == "cancelled 1 task\n"
        refused = run("retry", str(task_id), access=server.access_file)
        assert_one_line_error(refused, f"task {task_id} is still being killed on worker", 1)
        assert "nothing was retried" in refused.stderr
        assert client.task(task_id).status == Status.CANCELLED
    finally:
        worker.send_signal(signal.SIGKILL)  # its session closes: the server marks it lost
        worker.wait(10)
    (record,) = client.workers()
    wait_until(lambda: client.workers()[0].state == "lost", 15, what="the worker to be lost")
    assert record.worker_id == client.workers()[0].worker_id
    assert client.retry([task_id]) == [task_id]
    assert client.task(task_id).status == Status.PENDING


def test_a_retry_by_the_user_starts_the_crash_count_again(tmp_path) -> None:
    server = start_server(tmp_path / "limited", "--worker-timeout", "3", "--reap-interval", "0.3", "--crash-limit", "2")
    pool = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            task_id = client.submit("sleep 20")
            for losses in (1, 2):
                worker = pool.start("--concurrency", "1")
                _running(client, task_id)
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                wait_until(lambda n=losses: client.task(task_id).crash_count == n, 15, what=f"crash {losses}")
            assert client.task(task_id).status == Status.FAILED  # the crash limit
            assert run("retry", str(task_id), access=server.access_file).stdout == "1 task back in the queue\n"
            assert client.task(task_id).crash_count == 0
            worker = pool.start("--concurrency", "1")
            _running(client, task_id)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            wait_until(lambda: client.task(task_id).crash_count == 1, 15, what="the crash after the retry")
            assert client.task(task_id).status == Status.PENDING  # one crash of two allowed, not the third of two
    finally:
        pool.stop_all()
        server.stop()

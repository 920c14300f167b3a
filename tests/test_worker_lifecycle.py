"""Workers that stop, get lost, get deleted or change concurrency, on real processes."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import psutil
from conftest import output_of, wait_until

from tqhpc import Client, Status


def _blocking(flag: Path, marker: Path | None = None) -> str:
    """A task that runs until `flag` exists; it touches `marker` once it has started."""
    start = f"touch {marker}; " if marker else ""
    return f"{start}while [ ! -e {flag} ]; do sleep 0.02; done"


def _statuses(client: Client) -> list[str]:
    return [t.status.value for t in client.tasks()]


def test_sigterm_hands_back_prefetched_tasks_and_lets_running_ones_finish(client: Client, workers, tmp_path):
    flag = tmp_path / "release"
    ids = [client.submit(_blocking(flag)) for _ in range(3)]
    worker = workers.start("--concurrency", "1", "--prefetch", "2", "--grace-period", "60")
    wait_until(lambda: _statuses(client) == ["R", "C", "C"], what="one running, two accepted")
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: _statuses(client) == ["R", "P", "P"], what="the prefetched tasks to come back")
    assert "is stopping; the task had not started" in client.task(ids[1]).reason
    assert worker.poll() is None  # still waiting for the running task
    flag.touch()
    assert worker.wait(20) == 0
    assert _statuses(client) == ["S", "P", "P"]
    (record,) = client.workers()
    assert record.state == "stopped"
    assert "1 succeeded, 0 failed, 2 handed back" in output_of(worker)


def test_grace_period_expiry_kills_the_task_tree_and_requeues_it(client: Client, workers, tmp_path):
    child_pid = tmp_path / "child.pid"
    task_id = client.submit(f"sleep 300 & echo $! > {child_pid}; wait")
    worker = workers.start("--concurrency", "1", "--grace-period", "0.5")
    wait_until(child_pid.exists, what="the task's child")
    wait_until(lambda: child_pid.read_text().strip(), what="the child's pid")
    pid = int(child_pid.read_text())
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    task = client.task(task_id)
    assert task.status == Status.PENDING
    assert "killed after the 0.5 s grace period" in task.reason
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               what="the task's child to be killed")  # fmt: skip
    assert "1 handed back to the queue (1 of them killed at stop)" in output_of(worker)


def test_a_lost_worker_comes_back_as_a_new_one_and_its_tasks_run_again(client: Client, workers, tmp_path):
    """The server fixture declares a worker lost after 3 s without a ping."""
    ids = [client.submit("echo done") for _ in range(2)]
    flag = tmp_path / "never"
    blocker = client.submit('echo "run by $TQHPC_WORKER_ID"; ' + _blocking(flag))
    first = workers.start("--concurrency", "1", "--prefetch", "0")
    wait_until(lambda: client.task(ids[0]).status == Status.SUCCEEDED, what="the first task")
    wait_until(lambda: client.task(ids[1]).status == Status.SUCCEEDED, what="the second task")
    wait_until(lambda: list(client.logs(blocker)), what="the blocker's first output")
    os.kill(first.pid, signal.SIGSTOP)  # frozen: no more pings
    try:
        wait_until(lambda: client.task(blocker).status == Status.PENDING, timeout=15, what="the blocker to be requeued")
        assert "was lost: no ping for 3 s" in client.task(blocker).reason
        (lost,) = client.workers()
        assert lost.state == "lost"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    # woken up, the worker learns it was lost, kills its copy of the task and comes back as a new worker
    wait_until(lambda: "registering again" in output_of(first), what="the worker to register again")
    states = {w.worker_id: w.state for w in client.workers()}
    assert states[1] == "lost" and list(states.values()).count("running") == 1
    flag.touch()
    wait_until(lambda: client.task(blocker).status == Status.SUCCEEDED, what="the blocker, run again")
    task = client.task(blocker)
    assert task.attempts == 2 and task.worker_id != 1
    assert first.poll() is None
    # each attempt keeps its own output: the current one through the API, the lost one beside it on disk
    assert b"".join(c.data for c in client.logs(blocker)) == f"run by {task.worker_id}\n".encode()
    logs_dir = workers.server.state_dir / "logs" / f"{blocker // 1000:04d}"
    assert (logs_dir / f"{blocker}.1.out").read_text() == "run by 1\n"


def test_delete_worker_requeues_and_stops_it(client: Client, workers, tmp_path):
    marker = tmp_path / "started"
    task_id = client.submit(_blocking(tmp_path / "never", marker))
    worker = workers.start("--concurrency", "1")
    wait_until(marker.exists, what="the task to start")
    (record,) = client.workers()
    client.delete_worker(record.worker_id)
    assert worker.wait(20) == 0
    assert [w.state for w in client.workers()] == ["deleted"]
    task = client.task(task_id)  # handed back by the worker once killed, the kill not reported as its end
    assert (task.status, task.reason) == (Status.PENDING, f"worker {record.worker_id} was deleted")


def test_concurrency_follows_the_server_live(client: Client, workers, tmp_path):
    flag = tmp_path / "release"
    for _ in range(6):
        client.submit(_blocking(flag))
    workers.start("--concurrency", "1", "--prefetch", "0")
    wait_until(lambda: _statuses(client).count("R") == 1, what="one running task")
    (record,) = client.workers()
    client.update_worker(record.worker_id, concurrency=3)
    wait_until(lambda: _statuses(client).count("R") == 3, what="three running tasks")
    assert _statuses(client).count("P") == 3
    flag.touch()
    wait_until(lambda: _statuses(client) == ["S"] * 6, what="all tasks")


def test_create_worker_local_runs_tasks_and_delete_stops_it(client: Client):
    ids = [client.submit(f"echo {i}") for i in range(10)]
    created = client.create_workers(2, provider="local", concurrency=2, prefetch=1)
    assert len(created) == 2
    wait_until(lambda: all(t.status == Status.SUCCEEDED for t in client.tasks()), what="tasks on local workers")
    assert {client.task(i).worker_id for i in ids} <= set(created)
    # On a loaded machine one worker may run all ten before the other has registered: wait for both.
    wait_until(
        lambda: {w.worker_id: w.state for w in client.workers()} == dict.fromkeys(created, "running"),
        what="both local workers registered",
    )
    assert all(w.provider == "local" for w in client.workers())
    for worker_id in created:
        client.delete_worker(worker_id)
    wait_until(lambda: all(w.state == "deleted" for w in client.workers()), what="deleted workers")

    def worker_processes() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            ours = "--worker-id" in cmdline and str(client.access.address) in cmdline
            if ours and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
        return found

    wait_until(lambda: not worker_processes(), what=lambda: f"the worker processes to exit: {worker_processes()}")


def test_worker_keeps_going_when_the_server_restarts(client: Client, workers, server, tmp_path):
    from conftest import start_server

    first = client.submit("echo before")
    worker = workers.start("--concurrency", "1")
    wait_until(lambda: client.task(first).status == Status.SUCCEEDED, what="the first task")
    old_address = server.access.address
    assert server.stop() == 0
    blocker = socket.create_server(("127.0.0.1", int(old_address.rsplit(":", 1)[1])))  # the old port is taken
    restarted = start_server(server.state_dir, "--worker-timeout", "30")
    blocker.close()
    try:
        assert restarted.access.address != old_address  # the worker must find the new one in access.toml
        with Client(restarted.access_file) as again:
            second = again.submit("echo after")
            wait_until(lambda: again.task(second).status == Status.SUCCEEDED, timeout=30, what="the task after")
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        assert "2 succeeded, 0 failed" in output_of(worker)
    finally:
        restarted.stop()

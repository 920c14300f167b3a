"""Push dispatch and batched reports over the worker's session stream, on a real server and real workers.

Workers here ping rarely (every 5 or 30 s), so only the stream can explain a task starting, a cancel arriving or a
concurrency changing within a second.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ServerProcess, Workers, start_server, wait_until
from test_seed_worker import SeedWorker, channel, seed, seed_modules  # noqa: F401 - fixtures

from tqhpc import Client, Status


def _statuses(client: Client, ids: list[int]) -> str:
    return client.letters(ids)


def _output(client: Client, task_id: int) -> bytes:
    return b"".join(chunk.data for chunk in client.logs(task_id) if chunk.stream == "O")


@dataclass
class Patient:
    """A server that waits 90 s for a silent worker, so that workers pinging every 30 s stay live; its workers."""

    server: ServerProcess
    workers: Workers
    client: Client


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[Patient]:
    server = start_server(tmp_path / "patient", "--worker-timeout", "90", "--reap-interval", "0.5")
    pool = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            yield Patient(server, pool, client)
    finally:
        pool.stop_all()
        server.stop()


def _session_worker(workers: Workers, client: Client, *args: str) -> int:
    """Start a worker and return its id once its session is open (it has run a first task through the stream)."""
    workers.start(*args)
    first = client.submit("true")
    wait_until(lambda: client.task(first).status == Status.SUCCEEDED, timeout=20, what="the first task")
    return client.task(first).worker_id or 0


def test_an_idle_worker_starts_a_submitted_task_at_once(patient: Patient, tmp_path: Path) -> None:
    """With a ping every 5 s, a task starting within 0.5 s of its submission was pushed, every time."""
    workers, client = patient.workers, patient.client
    _session_worker(workers, client, "--ping-interval", "5", "--concurrency", "1")
    delays = []
    for number in range(5):
        clock = tmp_path / f"clock-{number}"
        submitted = time.time()
        task_id = client.submit(f"date +%s.%N > {clock}")
        wait_until(lambda: client.task(task_id).status == Status.SUCCEEDED, timeout=10, what="the task")  # noqa: B023
        delays.append(float(clock.read_text()) - submitted)
        time.sleep(0.3)
    assert max(delays) < 0.5, delays


def test_a_burst_of_tasks_ends_with_every_status_and_output(patient: Patient) -> None:
    """200 `true` and 50 `echo` tasks, reported in batches: every one ends S, with R recorded, output intact."""
    workers, client = patient.workers, patient.client
    workers.start("--ping-interval", "30", "--concurrency", "2")
    trues = client.submit_many(["true"] * 200)
    echoes = client.submit_many([f"echo line-{i}; echo second-{i}" for i in range(50)])
    ids = trues + echoes
    wait_until(lambda: set(_statuses(client, ids)) == {"S"}, timeout=90, what=lambda: _statuses(client, ids))
    for number, task_id in enumerate(echoes):
        assert _output(client, task_id) == f"line-{number}\nsecond-{number}\n".encode()
    for task in client.tasks(ids=ids):
        assert task.attempts == 1 and task.started_at is not None and task.ended_at is not None


def test_short_tasks_in_a_deep_pipeline_run_once_each(patient: Patient) -> None:
    """Short tasks with prefetch: pushes and reports cross on the wire all the time, yet each task runs once."""
    workers, client = patient.workers, patient.client
    workers.start("--ping-interval", "30", "--concurrency", "2", "--prefetch", "2")
    ids = client.submit_many([f"echo once-{i}" for i in range(400)])
    wait_until(lambda: set(_statuses(client, ids)) == {"S"}, timeout=90, what=lambda: _statuses(client, ids))
    ran_twice = [i for i, task_id in enumerate(ids) if _output(client, task_id) != f"once-{i}\n".encode()]
    assert ran_twice == []


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """A server that the test may kill and start again on the same state directory (the last one is stopped)."""
    started = [start_server(tmp_path / "own", "--worker-timeout", "20", "--reap-interval", "0.5")]
    yield started
    if started[-1].process.poll() is None:
        started[-1].stop()


def test_a_server_killed_mid_run_loses_and_doubles_nothing(own_server: list[ServerProcess], tmp_path: Path) -> None:
    """kill -9 the server while tasks run and report; start it again: every task ends S once, its output once."""
    server = own_server[0]
    pool = Workers(server, tmp_path)
    pool.start("--concurrency", "2", "--ping-interval", "0.5")
    try:
        with Client(server.access_file) as client:
            ids = client.submit_many(["sleep 0.1; echo task-$TQHPC_TASK_ID" for _ in range(40)])
            wait_until(lambda: _statuses(client, ids).count("S") >= 8, timeout=30, what="some tasks to end")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        time.sleep(1.0)  # tasks end and their reports wait for the server meanwhile
        own_server.append(start_server(server.state_dir, "--worker-timeout", "20", "--reap-interval", "0.5"))
        with Client(own_server[-1].access_file) as client:
            wait_until(lambda: set(_statuses(client, ids)) == {"S"}, timeout=60, what=lambda: _statuses(client, ids))
            for task in client.tasks(ids=ids):
                assert _output(client, task.task_id) == f"task-{task.task_id}\n".encode()
                assert task.attempts == 1, (task.task_id, task.attempts, task.reason)
            assert [w.state for w in client.workers(include_retired=True)] == ["running"]
    finally:
        pool.stop_all()


def test_a_cancel_and_a_concurrency_change_arrive_through_the_stream(patient: Patient, tmp_path: Path) -> None:
    """With a ping every 30 s: a cancelled running task is killed at once, and a raised concurrency runs two."""
    workers, client = patient.workers, patient.client
    worker_id = _session_worker(workers, client, "--ping-interval", "30", "--concurrency", "1", "--prefetch", "1")
    pid_file = tmp_path / "pid"
    long = client.submit(f"echo $$ > {pid_file}; exec sleep 60")
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=5, what="the long task to run")
    pid = int(pid_file.read_text())
    cancelled_at = time.monotonic()
    client.cancel([long])
    wait_until(lambda: not _alive(pid), timeout=5, what="the worker to kill the cancelled task")
    assert time.monotonic() - cancelled_at < 3
    assert client.task(long).status == Status.CANCELLED

    client.update_worker(worker_id, concurrency=2)
    pair = client.submit_many(["sleep 2", "sleep 2"])
    wait_until(lambda: _statuses(client, pair) == "RR", timeout=3, what=lambda: _statuses(client, pair))


def test_a_seed_worker_and_a_stream_worker_share_one_server(
    seed: object,  # noqa: F811 - the fixture
    workers: Workers,
    client: Client,
    tmp_path: Path,
) -> None:
    """A worker speaking only the seed's unary RPCs and a stream worker both finish tasks of one queue."""
    seed_worker = SeedWorker(seed, tmp_path, concurrency=1)  # type: ignore[arg-type]
    seed_worker.start()
    try:
        workers.start("--ping-interval", "1", "--concurrency", "1")
        ids = client.submit_many([f"sleep 0.4; echo done-{i}" for i in range(8)])
        wait_until(lambda: set(_statuses(client, ids)) == {"S"}, timeout=30, what=lambda: _statuses(client, ids))
    finally:
        seed_worker.stop()
    assert seed_worker.refused == []
    assert len({task.worker_id for task in client.tasks(ids=ids)}) == 2  # each of the two ran some
    for number, task_id in enumerate(ids):
        assert _output(client, task_id) == f"done-{number}\n".encode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

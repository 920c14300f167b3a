"""The worker's session stream: a worker that dies is seen at once; one that leaves, or only pings, is not lost.

These servers keep the worker timeout at 60 s unless a test says otherwise, so anything noticed within a few seconds
was noticed through the session, not by the reaper.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from conftest import ServerProcess, Workers, output_of, start_server, tqhpc_command, wait_until

from tqhpc import Client, Status
from tqhpc._proto import pb, rpc
from tqhpc.channel import open_channel, sync_stub
from tqhpc.store import Database, taskflow
from tqhpc.store import tasks as task_ops
from tqhpc.store import workers as worker_ops
from tqhpc.worker.connection import Connection
from tqhpc.worker.session import Session

SEEN_AT_ONCE_SECONDS = 3.0
LOST_BY_CONNECTION = "was lost: its connection to the server closed"


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that would wait 60 s before declaring a silent worker lost."""
    proc = start_server(tmp_path / "state", "--worker-timeout", "60", "--reap-interval", "0.5")
    yield proc
    if proc.process.poll() is None:
        proc.stop()


@pytest.fixture
def pool(patient_server: ServerProcess, tmp_path: Path) -> Iterator[Workers]:
    workers = Workers(patient_server, tmp_path)
    yield workers
    workers.stop_all()


def _kill_worker(worker: subprocess.Popen[bytes], orphans: list[psutil.Process]) -> float:
    orphans.extend(psutil.Process(worker.pid).children(recursive=True))
    worker.kill()
    worker.wait(10)
    return time.monotonic()


def _statuses(client: Client, ids: list[int]) -> list[Status]:
    return [client.task(task_id).status for task_id in ids]


def _cli(access: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TQHPC_ACCESS=str(access))
    return subprocess.run(tqhpc_command(*args), capture_output=True, text=True, timeout=60, env=env, check=False)


def test_a_killed_worker_is_lost_at_once_and_its_tasks_run_on_another(patient_server, pool, orphans) -> None:
    with Client(patient_server.access_file) as client:
        # Worker 1 sleeps through its tasks; whoever runs them next finishes them at once.
        command = 'if [ "$TQHPC_WORKER_ID" = 1 ]; then exec sleep 30; fi; echo "run by $TQHPC_WORKER_ID"'
        ids = [client.submit(command) for _ in range(2)]
        first = pool.start("--concurrency", "2")
        wait_until(lambda: _statuses(client, ids) == [Status.RUNNING] * 2, what="both tasks running on worker 1")

        killed_at = _kill_worker(first, orphans)
        wait_until(
            lambda: _statuses(client, ids) == [Status.PENDING] * 2,
            timeout=SEEN_AT_ONCE_SECONDS,
            what=lambda: f"the tasks back to pending: {_statuses(client, ids)}",
        )
        assert time.monotonic() - killed_at < SEEN_AT_ONCE_SECONDS
        for task_id in ids:
            task = client.task(task_id)
            assert f"worker 1 {LOST_BY_CONNECTION}" in task.reason
            assert task.crash_count == 1  # lost while running: counted as the reaper counts it
        (lost,) = client.workers()
        assert (lost.state, lost.running, lost.held) == ("lost", 0, 0)
        listing = _cli(patient_server.access_file, "workers", "--all")
        assert listing.returncode == 0, listing.stderr
        assert "lost" in next(line for line in listing.stdout.splitlines() if line.split()[0] == "1")

        pool.start("--concurrency", "2")
        wait_until(lambda: _statuses(client, ids) == [Status.SUCCEEDED] * 2, what="the tasks run again on worker 2")
        for task_id in ids:
            task = client.task(task_id)
            assert (task.worker_id, task.attempts) == (2, 2)
            assert b"".join(chunk.data for chunk in client.logs(task_id)) == b"run by 2\n"
    log = (patient_server.state_dir / "server.log").read_text()
    assert f"worker 1 {LOST_BY_CONNECTION}; tasks back to pending: {ids}" in log
    assert "Traceback" not in patient_server.log() and "ERROR" not in patient_server.log()


def test_a_worker_stopped_by_sigterm_says_goodbye_and_is_stopped_not_lost(patient_server, pool, tmp_path) -> None:
    with Client(patient_server.access_file) as client:
        task_id = client.submit(f"while [ ! -e {tmp_path / 'never'} ]; do sleep 0.05; done")
        worker = pool.start("--concurrency", "1", "--grace-period", "0.5")
        wait_until(lambda: client.task(task_id).status == Status.RUNNING, what="the task to run")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        (record,) = client.workers()
        assert record.state == "stopped"
        task = client.task(task_id)
        assert task.status == Status.PENDING and "killed after the 0.5 s grace period" in task.reason
        assert task.crash_count == 0
    log = (patient_server.state_dir / "server.log").read_text()
    assert "worker 1 is leaving: worker 1 stopped" in log
    assert "was lost" not in log
    assert "Traceback" not in output_of(worker) and "ERROR" not in output_of(worker)


class _RawSession:
    """A session opened by hand with the blocking API, as a worker written against the proto would."""

    def __init__(self, stub: rpc.TaskQueueStub, worker_id: int) -> None:
        self.outbox: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
        self.outbox.put(pb.WorkerMessage(hello=pb.WorkerHello(worker_id=worker_id)))
        self.call = stub.WorkerSession(iter(self.outbox.get, None))

    def welcome(self) -> pb.SessionWelcome:
        return next(self.call).welcome


def test_a_session_cancelled_after_hello_loses_its_worker_but_a_worker_that_only_pings_stays(patient_server) -> None:
    channel, stub = sync_stub(patient_server.access)
    with channel, Client(patient_server.access_file) as client:
        pinger = stub.RegisterWorker(pb.WorkerInfo(name="pings-only", concurrency=1, prefetch=0)).worker_id
        holder = stub.RegisterWorker(pb.WorkerInfo(name="session", concurrency=1, prefetch=0)).worker_id
        first, second = client.submit("true"), client.submit("true")
        assert [t.task_id for t in stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=pinger)).tasks] == [first]
        assert [t.task_id for t in stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=holder)).tasks] == [second]

        session = _RawSession(stub, holder)
        assert session.welcome().worker_id == holder
        session.call.cancel()
        wait_until(
            lambda: client.task(second).status == Status.PENDING,
            timeout=SEEN_AT_ONCE_SECONDS,
            what="the session holder's task back to pending",
        )
        assert f"worker {holder} {LOST_BY_CONNECTION}" in client.task(second).reason
        assert client.task(second).crash_count == 0  # it was only assigned: it never ran
        for _ in range(5):
            stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=pinger))
            time.sleep(0.2)
        states = {w.worker_id: w.state for w in client.workers()}
        assert states == {pinger: "running", holder: "lost"}
        task = client.task(first)
        assert (task.status, task.worker_id) == (Status.ASSIGNED, pinger)


def test_a_worker_that_only_pings_keeps_the_timeout_alone(server, stub, client) -> None:
    """The `server` fixture declares a worker lost after 3 s without a ping; a worker without a session is judged
    by that alone, and is not lost while it pings."""
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="pings-only", concurrency=1)).worker_id
    task_id = client.submit("true")
    deadline = time.monotonic() + 4.5  # longer than the timeout
    while time.monotonic() < deadline:
        stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker_id))
        time.sleep(0.3)
    assert [w.state for w in client.workers()] == ["running"]
    assert client.task(task_id).status == Status.ASSIGNED
    wait_until(lambda: client.task(task_id).status == Status.PENDING, timeout=10, what="the reaper")
    assert "was lost: no ping for 3 s" in client.task(task_id).reason


def test_a_session_is_refused_clearly(server, stub) -> None:
    def refusal(*messages: pb.WorkerMessage) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.WorkerSession(iter(messages)))
        return caught.value.code(), caught.value.details()

    def hello(worker_id: int) -> pb.WorkerMessage:
        return pb.WorkerMessage(hello=pb.WorkerHello(worker_id=worker_id))

    assert refusal(hello(77)) == (grpc.StatusCode.NOT_FOUND, "no worker 77: register it first (RegisterWorker)")
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="w")).worker_id
    stub.DeleteWorker(pb.WorkerId(worker_id=worker_id))
    code, details = refusal(hello(worker_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"worker {worker_id} is deleted" in details
    code, details = refusal()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ended before its hello" in details
    code, details = refusal(pb.WorkerMessage(goodbye=pb.WorkerGoodbye()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "starts with hello" in details and "not goodbye" in details
    live = stub.RegisterWorker(pb.WorkerInfo(name="live")).worker_id
    code, details = refusal(hello(live), hello(live))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "hello once" in details


def test_an_undecodable_message_ends_the_session_but_not_the_worker(server, stub, client) -> None:
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="w")).worker_id
    channel = open_channel(server.access)
    session = channel.stream_stream(
        "/taskqueue.TaskQueue/WorkerSession", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    hello = pb.WorkerMessage(hello=pb.WorkerHello(worker_id=worker_id)).SerializeToString()
    bad_goodbye = b"\x12\x03\x0a\x01\xff"  # goodbye whose reason is not UTF-8
    with channel, pytest.raises(grpc.RpcError) as caught:
        list(session(iter([hello, bad_goodbye]), metadata=server.access.metadata))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid taskqueue.WorkerMessage" in caught.value.details()
    time.sleep(0.5)
    assert [w.state for w in client.workers()] == ["running"]  # the connection was fine: the worker is not lost


def test_the_worker_side_session_opens_says_goodbye_and_reports_a_refusal(server, stub, client) -> None:
    live = stub.RegisterWorker(pb.WorkerInfo(name="w")).worker_id

    async def scenario() -> str:
        connection = Connection(server.access, server.access_file, give_up_after=5)
        refused = asyncio.Event()
        session = Session(connection, on_refused=refused.set)
        try:
            session.start(live)
            await asyncio.wait_for(session.opened.wait(), 10)
            await session.close("the test is done")
            session.start(4321)
            await asyncio.wait_for(refused.wait(), 10)
            return session.refused
        finally:
            session.abort()
            await connection.close()

    refusal = asyncio.run(scenario())
    assert refusal == "the server disowned worker 4321: no worker 4321: register it first (RegisterWorker)"
    log = (server.state_dir / "server.log").read_text()
    assert f"worker {live} is leaving: the test is done" in log
    assert [w.state for w in client.workers()] == ["running"]  # a goodbye alone retires nothing


def test_a_server_killed_and_restarted_keeps_the_worker_and_its_task(patient_server, pool, orphans, tmp_path) -> None:
    flag = tmp_path / "release"
    with Client(patient_server.access_file) as client:
        blocker = client.submit(f"while [ ! -e {flag} ]; do sleep 0.05; done")
        worker = pool.start("--concurrency", "2")
        wait_until(lambda: client.task(blocker).status == Status.RUNNING, what="the task to run")
    assert patient_server.stop(signal.SIGKILL) == -signal.SIGKILL
    restarted = start_server(patient_server.state_dir, "--worker-timeout", "60", "--reap-interval", "0.5")
    try:
        wait_until(lambda: "worker 1: session open" in restarted_log(restarted), what="the worker's session again")
        with Client(restarted.access_file) as client:
            task = client.task(blocker)
            assert (task.status, task.worker_id, task.attempts, task.crash_count) == (Status.RUNNING, 1, 1, 0)
            flag.touch()
            wait_until(lambda: client.task(blocker).status == Status.SUCCEEDED, what="the task to finish")
            assert [w.state for w in client.workers()] == ["running"]
            # The session on the new server is a live one: the worker's death is seen there at once too.
            sleeper = client.submit("sleep 30")
            wait_until(lambda: client.task(sleeper).status == Status.RUNNING, what="the next task to run")
            _kill_worker(worker, orphans)
            wait_until(
                lambda: client.task(sleeper).status == Status.PENDING,
                timeout=SEEN_AT_ONCE_SECONDS,
                what="the task of the killed worker back to pending",
            )
    finally:
        restarted.stop()


def restarted_log(server: ServerProcess) -> str:
    """The server log since the last start (the file is shared by every server of the state directory)."""
    text = (server.state_dir / "server.log").read_text()
    return text[text.rfind("serving on") :]


def test_a_retired_worker_holds_nothing_in_listings(tmp_path: Path) -> None:
    """Rows may still name a retired worker as holding tasks (left by an earlier server, say): it holds nothing."""
    state = tmp_path / "state"
    state.mkdir()
    db = Database(state / "tqhpc.db")

    def leftover(conn: sqlite3.Connection) -> int:
        worker = worker_ops.register(conn, name="w", concurrency=4, prefetch=0, hostname="h", pid=1, now=1.0)
        taskflow.insert_batch(conn, [taskflow.NewTask("sleep 1") for _ in range(3)], 1.0)
        task_ops.assign_pending(conn, worker.worker_id, 3)
        conn.execute("UPDATE tasks SET status = 'R' WHERE task_id IN (1, 2)")
        conn.execute("UPDATE workers SET state = 'stopped' WHERE worker_id = ?", (worker.worker_id,))
        return worker.worker_id

    db.call(leftover)
    db.close()
    server = start_server(state)
    try:
        listed = _cli(server.access_file, "workers", "--all", "--json")
        assert listed.returncode == 0, listed.stderr
        (record,) = json.loads(listed.stdout)
        assert (record["state"], record["running"], record["held"]) == ("stopped", 0, 0)
        table = _cli(server.access_file, "workers", "--all").stdout.splitlines()
        header, row = table[0].split(), table[1].split()
        assert row[header.index("RUNNING")] == "0" and row[header.index("HELD")] == "0"
    finally:
        server.stop()


def test_an_idle_session_worker_outlives_the_worker_timeout_and_is_seen_recently(tmp_path: Path) -> None:
    """Heartbeats of an idle session worker are kept in memory, yet the reaper and the listing both see them; the
    worker heartbeats as often as the server asks (a quarter of its 3 s timeout), not every 5 s as it would."""
    server = start_server(tmp_path / "state", "--worker-timeout", "3", "--reap-interval", "0.5")
    workers = Workers(server, tmp_path)
    try:
        workers.start("--heartbeat-interval", "5")
        with Client(server.access_file) as client:
            wait_until(client.workers, what="the worker")
            time.sleep(6)  # twice the worker timeout, idle all along
            (worker,) = client.workers(include_retired=True)
            assert worker.state == "running", worker
            assert worker.last_ping is not None and time.time() - worker.last_ping < 2.0
            task_id = client.submit("echo alive")
            wait_until(lambda: client.task(task_id).status == Status.SUCCEEDED, timeout=10, what="the task")
    finally:
        workers.stop_all()
        server.stop()

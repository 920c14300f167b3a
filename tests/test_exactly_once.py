"""Output and hand-backs arrive exactly once and in order, through crashes, broken calls and a failing store.

A session worker's report carries output whose chunks say where they start in their attempt's stream, so a report
resent after the server stored its output but not the rest (it died in between, or its store failed) does not store
that output twice. A seed client's SendTaskLogs call is stored only once the client has ended it, so a batch sent
again after a broken call is stored once. Everything here runs against a real server process, with real workers or
a client speaking the protocol by hand.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ServerProcess, Workers, output_of, start_server, wait_until
from test_seed_worker import channel, seed, seed_modules  # noqa: F401 - fixtures

from tqhpc import Client, Status
from tqhpc._proto import pb, rpc
from tqhpc.channel import open_channel, sync_stub
from tqhpc.server.log_intake import HOLD_BYTES, HOLD_SECONDS

MiB = 1024 * 1024


def _output(client: Client, task_id: int, stream: str = "O") -> bytes:
    return b"".join(chunk.data for chunk in client.logs(task_id) if chunk.stream == stream)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """A server the test may kill and start again on the same state directory (the last one is stopped)."""
    started = [start_server(tmp_path / "state", "--worker-timeout", "60", "--reap-interval", "0.5")]
    yield started
    if started[-1].process.poll() is None:
        started[-1].stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The seed client's server (through the `seed`, `client` and `stub` fixtures): patient with a worker that does
    not ping while the test sends its output."""
    proc = start_server(tmp_path / "seed-state", "--worker-timeout", "60", "--reap-interval", "0.5")
    yield proc
    if proc.process.poll() is None:
        proc.stop()


def _restart(servers: list[ServerProcess]) -> ServerProcess:
    """kill -9 the running server and start another on its state directory."""
    servers[-1].stop(signal.SIGKILL)
    servers.append(start_server(servers[-1].state_dir, "--worker-timeout", "60", "--reap-interval", "0.5"))
    return servers[-1]


class _HandSession:
    """A worker session spoken by hand with the blocking API, as a worker written against the proto would."""

    def __init__(self, stub: rpc.TaskQueueStub, worker_id: int) -> None:
        self.outbox: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
        self.outbox.put(pb.WorkerMessage(hello=pb.WorkerHello(worker_id=worker_id)))
        self.call = stub.WorkerSession(iter(self.outbox.get, None))
        self.pushed: list[pb.TaskPush] = []
        assert self._next("welcome").welcome.worker_id == worker_id

    def _next(self, kind: str) -> pb.ServerMessage:
        for message in self.call:
            if message.WhichOneof("kind") == "push":
                self.pushed.append(message.push)
            if message.WhichOneof("kind") == kind:
                return message
        raise AssertionError(f"the session ended before a {kind}")

    def report(self, sequence: int, *logs: pb.TaskLog, updates: list[pb.TaskStatusUpdate] | None = None) -> None:
        message = pb.WorkerReport(sequence=sequence, logs=logs, updates=updates or [])
        self.outbox.put(pb.WorkerMessage(report=message))
        ack = self._next("ack").ack
        assert (ack.sequence, list(ack.refused_task_ids)) == (sequence, [])

    def close(self) -> None:
        self.outbox.put(pb.WorkerMessage(goodbye=pb.WorkerGoodbye(reason="the test is done")))
        self.outbox.put(None)
        with contextlib.suppress(grpc.RpcError):
            for _ in self.call:
                pass


def _chunk(task_id: int, log_type: str, text: str, offset: int) -> pb.TaskLog:
    return pb.TaskLog(task_id=task_id, log_type=log_type, log_text=text, offset=offset)


def test_a_report_sent_again_after_its_output_was_stored_stores_that_output_once(servers) -> None:
    """Replays across a session break and a server killed with -9: what the stream holds already is not stored
    again, an overlapping chunk adds only its new end, and a chunk after a gap is stored and the gap logged."""
    opened, stub = sync_stub(servers[-1].access)
    with opened, Client(servers[-1].access_file) as client:
        worker_id = stub.RegisterWorker(pb.WorkerInfo(name="by-hand", concurrency=1)).worker_id
        task_id = client.submit("true")  # never run: the test speaks for the worker
        session = _HandSession(stub, worker_id)
        pushed = session.pushed or [session._next("push").push]
        assert [task.task_id for task in pushed[0].tasks] == [task_id]
        running = pb.TaskStatusUpdate(task_id=task_id, new_status="R")
        first = [_chunk(task_id, "O", "line 1\nline 2\n", 0), _chunk(task_id, "E", "err 1\n", 0)]
        session.report(1, *first, updates=[running])
        # What a worker sends after the server stored a report's output and died before recording the report.
        session.report(2, *first, _chunk(task_id, "O", "line 2\nline 3\n", 7))
        session.close()
    restarted = _restart(servers)
    opened, stub = sync_stub(restarted.access)
    with opened, Client(restarted.access_file) as client:
        session = _HandSession(stub, worker_id)
        session.report(3, _chunk(task_id, "O", "line 1\nline 2\nline 3\nline 4\n", 0))
        done = pb.TaskStatusUpdate(task_id=task_id, new_status="S", exit_code=0)
        session.report(4, _chunk(task_id, "O", "line 6\n", 35), updates=[done])  # "line 5\n" never came
        session.close()
        assert client.task(task_id).status == Status.SUCCEEDED
        assert _output(client, task_id) == b"line 1\nline 2\nline 3\nline 4\nline 6\n"
        assert _output(client, task_id, "E") == b"err 1\n"
    log = (restarted.state_dir / "server.log").read_text()
    assert f"task {task_id}: its O output has 28 bytes stored, the next chunk starts at byte 35" in log


def test_a_server_killed_while_tasks_print_keeps_every_line_once_in_order(servers, tmp_path: Path) -> None:
    """kill -9 the server three times while tasks print thousands of lines, each time the moment it has stored
    output (so most likely before it recorded the report that carried it); each task's output is its lines, once
    each, in order."""
    lines = 30000
    pool = Workers(servers[-1], tmp_path)
    pool.start("--concurrency", "4", "--ping-interval", "0.5")
    command = f"for i in $(seq 1 {lines}); do echo $TQHPC_TASK_ID-$i; [ $((i % 2000)) = 0 ] && sleep 0.3; done; true"
    try:
        with Client(servers[-1].access_file) as client:
            ids = client.submit_many([command] * 4)
        for _ in range(3):
            _kill_as_output_lands(servers[-1])
            servers.append(start_server(servers[-1].state_dir, "--worker-timeout", "60", "--reap-interval", "0.5"))
        with Client(servers[-1].access_file) as client:
            wait_until(lambda: client.letters(ids) == "SSSS", timeout=60, what=lambda: client.letters(ids))
            for task_id in ids:
                expected = "".join(f"{task_id}-{i}\n" for i in range(1, lines + 1)).encode()
                assert _output(client, task_id) == expected, task_id
                assert client.task(task_id).attempts == 1
    finally:
        pool.stop_all()


def _kill_as_output_lands(server: ServerProcess) -> None:
    """kill -9 the server the moment one of its output files grows: it has just stored a report's output and is
    about to record the report itself. Polled without a pause: the moment is a millisecond long."""
    logs = server.state_dir / "logs"

    def sizes() -> list[int]:
        return [entry.stat().st_size for shard in logs.glob("*") for entry in os.scandir(shard)]

    before = sizes()
    deadline = time.monotonic() + 5  # or, should the tasks be done by now, after a while
    while sizes() == before and time.monotonic() < deadline:
        pass
    server.stop(signal.SIGKILL)


# --- the seed's SendTaskLogs ----------------------------------------------------------------------------------------


def _held_call(seed_client: Any, messages: list[Any], **kwargs: Any) -> tuple[grpc.Future, queue.Queue[Any]]:
    """A SendTaskLogs call that has sent `messages` and keeps its stream open until None is put in the queue."""
    outbox: queue.Queue[Any] = queue.Queue()
    for message in messages:
        outbox.put(message)
    call = seed_client.stub.SendTaskLogs.future(iter(outbox.get, None), metadata=seed_client.metadata, **kwargs)
    return call, outbox


@pytest.mark.parametrize("how", ["cancelled", "deadline", "connection closed"])
def test_a_seed_batch_sent_again_after_a_broken_call_is_stored_once(
    seed: Any,  # noqa: F811 - the fixture
    server: ServerProcess,
    client: Client,
    how: str,
) -> None:
    """300 lines in a call broken before its end, then the same 300 again as scitq's worker sends them (it
    cancels the finished call once it has reported the task's status): the task holds each line once."""
    worker_id = seed.register("scitq-like", concurrency=1)
    task_id = seed.submit("true")
    assert [task.task_id for task in seed.ping(worker_id).tasks] == [task_id]
    assert seed.set_status(task_id, "C")
    batch = [seed.pb.TaskLog(task_id=task_id, log_type="stdout", log_text=f"line {i}\n") for i in range(300)]
    if how == "connection closed":
        own = open_channel(server.access)
        broken = type(seed.stub)(own).SendTaskLogs.future(iter(_blocking(batch)), metadata=seed.metadata)
        time.sleep(0.5)  # the server has read the 300 lines
        own.close()
    else:
        broken, outbox = _held_call(seed, batch, timeout=1.0 if how == "deadline" else None)
        time.sleep(0.5)
        if how == "cancelled":
            broken.cancel()
        wait_until(broken.done, what="the broken call to end")
        outbox.put(None)
    time.sleep(0.3)
    assert _output(client, task_id) == b""  # nothing of a broken call is stored
    resent = seed.stub.SendTaskLogs.future(iter(batch), metadata=seed.metadata)
    wait_until(resent.done, what="the resent batch")
    assert seed.set_status(task_id, "S")
    resent.cancel()
    assert _output(client, task_id) == "".join(f"line {i}\n" for i in range(300)).encode()


def _blocking(messages: list[Any]) -> Iterator[Any]:
    """The messages, then a wait that outlasts the test's patience: a stream that never ends by itself."""
    yield from messages
    time.sleep(5)


def test_a_call_kept_open_for_a_whole_task_has_its_lines_seen_as_they_come(
    seed: Any,  # noqa: F811 - the fixture
    server: ServerProcess,
    client: Client,
) -> None:
    """scitq's worker keeps one SendTaskLogs call open while its task runs: after the hold, its lines are stored as
    they come, long before the call ends, and a call carrying more than the server holds in memory is stored whole."""
    worker_id = seed.register("scitq-like", concurrency=1)
    task_id = seed.submit("true")
    seed.ping(worker_id)
    call, outbox = _held_call(seed, [seed.pb.TaskLog(task_id=task_id, log_type="stdout", log_text="first\n")])
    wait_until(lambda: _output(client, task_id) == b"first\n", timeout=HOLD_SECONDS + 5, what="the held line")
    outbox.put(seed.pb.TaskLog(task_id=task_id, log_type="stdout", log_text="second\n"))
    wait_until(lambda: _output(client, task_id) == b"first\nsecond\n", timeout=3, what="a line as it comes")
    big = "x" * (MiB - 1) + "\n"
    for _ in range(HOLD_BYTES // MiB + 2):
        outbox.put(seed.pb.TaskLog(task_id=task_id, log_type="stdout", log_text=big))
    outbox.put(None)
    assert call.result(timeout=30).success
    assert _output(client, task_id) == b"first\nsecond\n" + big.encode() * (HOLD_BYTES // MiB + 2)


def test_send_task_logs_chunks_with_offsets_are_stored_once(server, stub, client) -> None:
    """A newer client that says where its chunks start gets a resent call stored once, even one that overlaps."""
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="newer", concurrency=1)).worker_id
    task_id = client.submit("true")
    stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker_id))
    first = [_chunk(task_id, "O", "a\n", 0), _chunk(task_id, "O", "b\n", 2), _chunk(task_id, "E", "e\n", 0)]
    assert stub.SendTaskLogs(iter(first)).success
    assert stub.SendTaskLogs(iter([*first, _chunk(task_id, "O", "b\nc\n", 2)])).success
    assert _output(client, task_id) == b"a\nb\nc\n"
    assert _output(client, task_id, "E") == b"e\n"


# --- handing tasks back --------------------------------------------------------------------------------------------


def test_a_worker_stopped_with_no_grace_hands_its_tasks_back_in_its_report(servers, tmp_path: Path) -> None:
    """SIGTERM, grace 0: the running tasks are killed and go back to P with their cut attempt's output kept as
    that attempt's log, the prefetched one too, each with its reason; the release rode the worker's reports
    (which the server logs as such), not the separate ReleaseTasks call."""
    server = servers[-1]
    pool = Workers(server, tmp_path)
    never = tmp_path / "never"
    with Client(server.access_file) as client:
        ids = client.submit_many([f"echo cut-$TQHPC_TASK_ID; while [ ! -e {never} ]; do sleep 0.05; done"] * 3)
        worker = pool.start("--concurrency", "2", "--prefetch", "1", "--grace-period", "0")
        wait_until(
            lambda: client.letters(ids) == "RRC", what=lambda: f"two running, one accepted: {client.letters(ids)}"
        )
        wait_until(lambda: all(_output(client, t) for t in ids[:2]), what="the running tasks' first output")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        assert client.letters(ids) == "PPP"
        logs = server.state_dir / "logs" / "0000"
        for task_id in ids[:2]:
            task = client.task(task_id)
            assert "the task was killed after the 0 s grace period" in task.reason
            assert task.crash_count == 0
            assert (logs / f"{task_id}.1.out").read_text() == f"cut-{task_id}\n"
        assert "the task had not started" in client.task(ids[2]).reason
    log = (server.state_dir / "server.log").read_text()
    assert f"worker 1 handed back tasks {ids[2:]} in its report: worker 1 is stopping; the task had not started" in log
    assert f"worker 1 handed back tasks {ids[:2]} in its report: worker 1 is stopping; the task was killed" in log
    assert f"worker 1 handed back tasks {ids[:2]}: " not in log  # no ReleaseTasks call
    assert "Traceback" not in output_of(worker)


# --- a store that fails for a while ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _failing_store(state_dir: Path) -> Iterator[None]:
    """Every write to the server's database fails while this lasts: its write-ahead log is made immutable, which
    stops writes through the file the server holds open (root included), and SQLite answers "disk I/O error"."""
    wal = state_dir / "tqhpc.db-wal"
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("needs chattr to make the database's write-ahead log immutable")
    made = subprocess.run([chattr, "+i", str(wal)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make the write-ahead log immutable here (needs root, ext4/xfs/btrfs): {made.stderr}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(wal)], check=True)


def test_a_final_report_the_store_fails_is_sent_again_until_it_is_applied(servers, tmp_path: Path) -> None:
    """The store fails as a task ends: its final report (output and S) is refused with a storage failure, again and
    again, until the store works; then the task is S with its output once, on the same worker, nothing counted
    as a crash. While the store fails, the worker keeps its task and its session."""
    server = servers[-1]
    pool = Workers(server, tmp_path)
    flag = tmp_path / "finish"
    command = f"echo before; while [ ! -e {flag} ]; do sleep 0.05; done; seq 1 1000; echo after >&2"
    try:
        with Client(server.access_file) as client:
            task_id = client.submit(command)
            worker = pool.start("--concurrency", "1")
            wait_until(lambda: _output(client, task_id) == b"before\n", what="the task's first output")
            with _failing_store(server.state_dir):
                flag.touch()
                wait_until(lambda: "disk I/O error" in (server.state_dir / "server.log").read_text(),
                           what="the store to fail the report")  # fmt: skip
                time.sleep(2.0)  # the worker keeps sending it meanwhile
                assert client.task(task_id).status == Status.RUNNING
                assert worker.poll() is None, output_of(worker)
            wait_until(lambda: client.task(task_id).status == Status.SUCCEEDED, timeout=15, what="the task to end")
            task = client.task(task_id)
            assert (task.worker_id, task.attempts, task.crash_count) == (1, 1, 0)
            expected = b"before\n" + "".join(f"{i}\n" for i in range(1, 1001)).encode()
            assert _output(client, task_id) == expected
            assert _output(client, task_id, "E") == b"after\n"
            assert [w.state for w in client.workers()] == ["running"]
            assert worker.poll() is None
            assert "refused this worker" not in output_of(worker)  # a failed ping is not a refusal
    finally:
        pool.stop_all()

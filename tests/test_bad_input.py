"""Bad input at the RPC level: each gets a clear status and message, and nothing already stored is lost."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import grpc
import pytest

from tqhpc._proto import pb
from tqhpc.channel import open_channel
from tqhpc.server.validate import MAX_COMMAND_BYTES


def _code_and_details(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


def _all_tasks(stub) -> list[pb.Task]:
    return list(stub.ListTasks(pb.ListTasksRequest()).tasks)


@pytest.fixture
def stored(stub) -> list[int]:
    """Tasks submitted before each bad request: they must come through unchanged."""
    return [stub.SubmitTask(pb.TaskRequest(command=f"echo {i}")).task_id for i in range(3)]


def _unchanged(stub, stored: list[int]) -> None:
    tasks = _all_tasks(stub)
    assert [(t.task_id, t.command, t.status) for t in tasks] == [(i, f"echo {n}", "P") for n, i in enumerate(stored)]


@pytest.mark.parametrize("command", ["", "   \n\t"])
def test_empty_command(stub, stored, command: str) -> None:
    code, details = _code_and_details(stub.SubmitTask, pb.TaskRequest(command=command))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "the command is empty"
    _unchanged(stub, stored)


def test_one_mebibyte_command(stub, stored) -> None:
    code, details = _code_and_details(stub.SubmitTask, pb.TaskRequest(command="x" * (1 << 20)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"1048576 bytes; at most {MAX_COMMAND_BYTES}" in details
    _unchanged(stub, stored)


def test_the_longest_command_that_fits_is_taken(stub, client) -> None:
    command = "true " + "x" * (MAX_COMMAND_BYTES - 5)
    task_id = stub.SubmitTask(pb.TaskRequest(command=command)).task_id
    assert client.task(task_id).command == command


def test_nul_in_command(stub, stored) -> None:
    code, details = _code_and_details(stub.SubmitTask, pb.TaskRequest(command="echo a\0b"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "NUL" in details
    _unchanged(stub, stored)


def _raw(server, method: str, kind: str = "unary_unary"):
    channel = open_channel(server.access)
    return getattr(channel, kind)(
        f"/taskqueue.TaskQueue/{method}", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


def _task_log_bytes(task_id: int, log_type: str, text: bytes) -> bytes:
    """A TaskLog encoded by hand, so its string field can hold what no protobuf library would send."""
    return bytes([0x08, task_id, 0x12, 1]) + log_type.encode() + bytes([0x1A, len(text)]) + text


def test_non_utf8_in_a_log_text_field_keeps_the_good_chunks(server, stub, client, stored) -> None:
    send = _raw(server, "SendTaskLogs", "stream_unary")
    chunks = [_task_log_bytes(stored[0], "O", b"before\n"), _task_log_bytes(stored[0], "O", b"\xff\xfe\n"),
              _task_log_bytes(stored[0], "E", b"after\n")]  # fmt: skip
    code, details = _code_and_details(send, iter(chunks), metadata=server.access.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid taskqueue.TaskLog" in details and "UTF-8" in details and "2 others stored" in details
    logs = list(client.logs(stored[0]))
    assert [(c.stream, c.data) for c in logs] == [("O", b"before\n"), ("E", b"after\n")]
    _unchanged(stub, stored)


def test_non_utf8_bytes_in_log_bytes_are_kept_exactly(stub, client, stored) -> None:
    raw = b"\xff\xfe\x00binary\xc3"
    chunks = [pb.TaskLog(task_id=stored[1], log_type="O", log_bytes=raw)]
    assert stub.SendTaskLogs(iter(chunks)).success
    assert b"".join(c.data for c in client.logs(stored[1])) == raw


def test_bad_utf8_in_a_unary_request(server, stored, stub) -> None:
    submit = _raw(server, "SubmitTask")
    code, details = _code_and_details(submit, b"\x0a\x03\xff\xfeA", metadata=server.access.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid taskqueue.TaskRequest" in details
    _unchanged(stub, stored)


def test_log_chunks_for_unknown_tasks_and_types(stub, client, stored) -> None:
    chunks = [
        pb.TaskLog(task_id=stored[0], log_type="O", log_text="kept\n"),
        pb.TaskLog(task_id=9999, log_type="O", log_text="nowhere\n"),
    ]
    code, details = _code_and_details(stub.SendTaskLogs, iter(chunks))
    assert code == grpc.StatusCode.NOT_FOUND and "no task 9999" in details and "1 other stored" in details
    code, details = _code_and_details(
        stub.SendTaskLogs, iter([pb.TaskLog(task_id=stored[0], log_type="X", log_text="?")])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'O' or 'stdout', 'E' or 'stderr', not 'X'" in details
    assert b"".join(c.data for c in client.logs(stored[0])) == b"kept\n"


def _worker_holding(stub, count: int = 1) -> tuple[int, list[int]]:
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="hand", concurrency=count)).worker_id
    tasks = stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker_id)).tasks
    return worker_id, [t.task_id for t in tasks]


@pytest.mark.parametrize(
    ("letter", "expected"),
    [
        ("S", "task {t} is A (assigned); it cannot become S (succeeded): from there a worker may report C or F or R"),
        ("P", "task {t}: status P (pending) is set by the server; workers report C, R, S or F"),
        ("X", "task {t}: status X (cancelled) is set by the server; workers report C, R, S or F"),
        ("Z", "unknown status letter 'Z' (the letters are W P A C R S F X)"),
        ("", "unknown status letter '' (the letters are W P A C R S F X)"),
        ("SS", "unknown status letter 'SS' (the letters are W P A C R S F X)"),
    ],
)
def test_status_letters_out_of_order(stub, stored, letter: str, expected: str) -> None:
    worker_id, (task_id,) = _worker_holding(stub)
    update = pb.TaskStatusUpdate(task_id=task_id, new_status=letter, worker_id=worker_id)
    code, details = _code_and_details(stub.UpdateTaskStatus, update)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == expected.format(t=task_id)
    assert stub.GetTask(pb.TaskId(task_id=task_id)).status == "A"


def test_no_going_back_from_a_terminal_status(stub, stored) -> None:
    worker_id, (task_id,) = _worker_holding(stub)
    for letter in "RS":
        stub.UpdateTaskStatus(pb.TaskStatusUpdate(task_id=task_id, new_status=letter, worker_id=worker_id))
    assert stub.UpdateTaskStatus(pb.TaskStatusUpdate(task_id=task_id, new_status="S")).success  # a repeat is a no-op
    code, details = _code_and_details(stub.UpdateTaskStatus, pb.TaskStatusUpdate(task_id=task_id, new_status="R"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == f"task {task_id} is S (succeeded); it cannot become R (running): a worker may not change it"


def test_unknown_task_status_update(stub) -> None:
    code, details = _code_and_details(stub.UpdateTaskStatus, pb.TaskStatusUpdate(task_id=424242, new_status="R"))
    assert code == grpc.StatusCode.NOT_FOUND and details == "no task 424242"


def test_ping_from_an_unknown_worker(stub, stored) -> None:
    code, details = _code_and_details(stub.PingAndTakeNewTasks, pb.WorkerId(worker_id=77))
    assert code == grpc.StatusCode.NOT_FOUND and "no worker 77" in details
    _unchanged(stub, stored)


def test_a_worker_reporting_a_task_it_does_not_hold(stub, stored) -> None:
    holder, (task_id,) = _worker_holding(stub)
    other = stub.RegisterWorker(pb.WorkerInfo(name="other", concurrency=1)).worker_id
    update = pb.TaskStatusUpdate(task_id=task_id, new_status="R", worker_id=other)
    code, details = _code_and_details(stub.UpdateTaskStatus, update)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details == f"task {task_id} is held by worker {holder}, not by worker {other}"


def test_bad_status_filter(stub) -> None:
    code, details = _code_and_details(stub.ListTasks, pb.ListTasksRequest(status_filter="Q"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown status letter 'Q'" in details


def test_unknown_provider_and_bad_numbers(stub) -> None:
    code, details = _code_and_details(stub.CreateWorker, pb.WorkerRequest(provider="nimbus", number=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "unknown provider 'nimbus' (this server knows: local, slurm)"
    code, details = _code_and_details(stub.CreateWorker, pb.WorkerRequest(provider="local", number=0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "number must be between 1 and" in details
    assert stub.ListWorkers(pb.ListWorkersRequest()).workers == []


def test_every_rpc_needs_the_token(bare_channel) -> None:
    from tqhpc._proto import rpc

    stub = rpc.TaskQueueStub(bare_channel)
    calls = [
        (stub.SubmitTask, pb.TaskRequest(command="true")),
        (stub.RegisterWorker, pb.WorkerInfo(name="x")),
        (stub.PingAndTakeNewTasks, pb.WorkerId(worker_id=1)),
        (stub.UpdateTaskStatus, pb.TaskStatusUpdate(task_id=1, new_status="R")),
        (stub.ListTasks, pb.ListTasksRequest()),
        (stub.ListWorkers, pb.ListWorkersRequest()),
        (stub.CreateWorker, pb.WorkerRequest(provider="local", number=1)),
        (stub.DeleteWorker, pb.WorkerId(worker_id=1)),
        (stub.GetTask, pb.TaskId(task_id=1)),
    ]
    for method, request in calls:
        code, details = _code_and_details(method, request)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details
    code, _ = _code_and_details(stub.SendTaskLogs, iter([pb.TaskLog(task_id=1, log_type="O", log_text="x")]))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = _code_and_details(lambda r: list(stub.StreamTaskLogs(r)), pb.TaskId(task_id=1))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_wrong_token_is_refused(server) -> None:
    from tqhpc._proto import rpc

    channel = open_channel(server.access)
    stub = rpc.TaskQueueStub(channel)
    code, details = _code_and_details(
        stub.ListTasks, pb.ListTasksRequest(), metadata=(("authorization", "bearer not-the-token"),)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and details.startswith("wrong token")
    assert not list(stub.ListTasks(pb.ListTasksRequest(), metadata=server.access.metadata).tasks)


def test_output_from_a_worker_that_no_longer_holds_the_task_is_dropped(stub, client, stored) -> None:
    holder, (task_id,) = _worker_holding(stub)
    other = stub.RegisterWorker(pb.WorkerInfo(name="late", concurrency=1)).worker_id
    chunks = [
        pb.TaskLog(task_id=task_id, log_type="O", log_text="from the holder\n", worker_id=holder),
        pb.TaskLog(task_id=task_id, log_type="O", log_text="from a stale worker\n", worker_id=other),
        pb.TaskLog(task_id=task_id, log_type="O", log_text="from a seed client\n"),
    ]
    assert stub.SendTaskLogs(iter(chunks)).success
    assert b"".join(c.data for c in client.logs(task_id)) == b"from the holder\nfrom a seed client\n"


def test_output_the_server_cannot_write_is_a_clear_error(server, stub, stored) -> None:
    """A shard directory that cannot be made (here a file in its place) stands for a full or broken disk."""
    (server.state_dir / "logs" / "0000").write_text("not a directory")
    chunks = [pb.TaskLog(task_id=stored[0], log_type="O", log_text="lost?\n")]
    code, details = _code_and_details(stub.SendTaskLogs, iter(chunks))
    assert code == grpc.StatusCode.INTERNAL
    assert details.startswith("the server could not store or read data (") and "server.log" in details
    assert _storage_failure_logged(server, "SendTaskLogs")
    _unchanged(stub, stored)  # the server goes on


def test_a_database_error_is_a_clear_error(server, stub, stored) -> None:
    """SQLite refusing a write (a trigger stands in for a full disk or a corrupt page) fails that call alone."""
    import sqlite3

    conn = sqlite3.connect(server.state_dir / "tqhpc.db")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON tasks BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    conn.commit()
    code, details = _code_and_details(stub.SubmitTask, pb.TaskRequest(command="echo x"))
    assert code == grpc.StatusCode.INTERNAL
    assert details == "the server could not store or read data (IntegrityError: disk on fire); see its server.log"
    conn.execute("DROP TRIGGER refuse")
    conn.commit()
    conn.close()
    _unchanged(stub, stored)
    assert stub.SubmitTask(pb.TaskRequest(command="echo y")).task_id == stored[-1] + 1


@contextlib.contextmanager
def _broken_store(server, how: str, undo: str) -> Iterator[None]:
    """Change the server's database from another connection so that SQLite fails the server's next operations."""
    conn = sqlite3.connect(server.state_dir / "tqhpc.db")
    conn.execute(how)
    conn.commit()
    try:
        yield
    finally:
        conn.execute(undo)
        conn.commit()
        conn.close()


def _refusing_task_changes(server):
    """Every change of a task refused by SQLite (a trigger stands in for a full disk or a corrupt page)."""
    refuse = "CREATE TRIGGER refuse BEFORE UPDATE ON tasks BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    return _broken_store(server, refuse, "DROP TRIGGER refuse")


def _tasks_unreadable(server):
    """The tasks table gone from under the server (renamed away): every read of a task fails in SQLite."""
    return _broken_store(server, "ALTER TABLE tasks RENAME TO tasks_away", "ALTER TABLE tasks_away RENAME TO tasks")


def _storage_failure_logged(server, rpc: str) -> bool:
    log = (server.state_dir / "server.log").read_text()
    return "the server's storage is failing (" in log and f" in {rpc}: " in log  # said once, naming the call


def test_a_database_error_on_a_status_report_is_a_clear_error(server, stub, stored) -> None:
    worker_id, (task_id,) = _worker_holding(stub)
    running = pb.TaskStatusUpdate(task_id=task_id, new_status="R", worker_id=worker_id)
    with _refusing_task_changes(server):
        code, details = _code_and_details(stub.UpdateTaskStatus, running)
    assert code == grpc.StatusCode.INTERNAL
    assert details == "the server could not store or read data (IntegrityError: disk on fire); see its server.log"
    assert _storage_failure_logged(server, "UpdateTaskStatus")
    assert stub.GetTask(pb.TaskId(task_id=task_id)).status == "A"
    assert stub.UpdateTaskStatus(running).success  # the server goes on


def test_a_database_error_while_taking_output_is_a_clear_error(server, stub, client, stored) -> None:
    chunks = [pb.TaskLog(task_id=stored[0], log_type="O", log_text="lost?\n")]
    with _tasks_unreadable(server):
        code, details = _code_and_details(stub.SendTaskLogs, iter(chunks))
    assert code == grpc.StatusCode.INTERNAL
    assert details.startswith("the server could not store or read data (OperationalError: no such table: tasks)")
    assert _storage_failure_logged(server, "SendTaskLogs")
    assert stub.SendTaskLogs(iter(chunks)).success  # the server goes on
    assert b"".join(c.data for c in client.logs(stored[0])) == b"lost?\n"


def test_a_database_error_while_following_output_is_a_clear_error(server, stub, stored) -> None:
    with _tasks_unreadable(server):
        code, details = _code_and_details(lambda r: list(stub.StreamTaskLogs(r)), pb.TaskId(task_id=stored[0]))
    assert code == grpc.StatusCode.INTERNAL
    assert details.startswith("the server could not store or read data (OperationalError: no such table: tasks)")
    assert _storage_failure_logged(server, "StreamTaskLogs")
    _unchanged(stub, stored)

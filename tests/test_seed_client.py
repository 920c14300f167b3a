"""A client generated from the seed's documentation alone works against the server.

The seed is the protoc-gen-doc Markdown of the original TaskQueue protocol (`tests/seed/taskqueue_seed.md`). Anyone
holding only that page must be able to rebuild a `.proto`, generate stubs and use every RPC of the server; so this
module parses the page into proto text, compiles it with grpc_tools, and drives all ten RPCs against a real server,
acting as submitter, worker and administrator. It deliberately never reads `proto/taskqueue.proto` nor uses
`tqhpc._proto` for the seed client: any field the server added must stay optional for such a client.
"""

from __future__ import annotations

import html
import importlib
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import grpc
import pytest
from conftest import ServerProcess, start_server, wait_until
from google.protobuf import descriptor_pool
from grpc_tools import protoc

SEED_DOC = Path(__file__).parent / "seed" / "taskqueue_seed.md"
PROTO_NAME = "seedqueue"
"""The generated modules are `seedqueue_pb2` and `seedqueue_pb2_grpc`: no clash with the project's own modules."""
CALL_TIMEOUT = 15.0
MAX_COMMAND_BYTES = 128 * 1024 - 1

SCALAR_TYPES = frozenset({
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
})  # fmt: skip
MESSAGE_HEADER = ["Field", "Type", "Label", "Description"]
SERVICE_HEADER = ["Method Name", "Request Type", "Response Type", "Description"]
_TYPE_CELL = re.compile(r"^\[?(?P<type>[A-Za-z_][\w.]*)\]?(?:\(#[^)]*\))?(?P<stream>\s+stream)?$")
_ANCHOR = re.compile(r'<a name="(?P<name>[^"]+)"></a>')


# --- the seed Markdown -> .proto ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedField:
    name: str
    type: str
    label: str  # "", "optional" or "repeated"
    description: str


@dataclass(frozen=True)
class SeedMethod:
    name: str
    request: str
    response: str
    client_streaming: bool
    server_streaming: bool


@dataclass
class _Section:
    """One `### Name` block of the page: a message (a field table or none) or a service (a method table)."""

    name: str
    anchor: str
    header: list[str] | None = None
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class SeedSchema:
    package: str
    messages: dict[str, list[SeedField]]
    services: dict[str, list[SeedMethod]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _type_of(cell: str) -> tuple[str, bool]:
    """`[Task](#taskqueue-Task)` -> ("Task", False); `[TaskLog](#taskqueue-TaskLog) stream` -> ("TaskLog", True)."""
    match = _TYPE_CELL.match(cell)
    if match is None:
        raise ValueError(f"cannot read a type from table cell {cell!r}")
    return match["type"], match["stream"] is not None


def _sections(text: str) -> list[_Section]:
    """Split the page into its `###` blocks, each with the anchor above it and its one table, if any."""
    sections: list[_Section] = []
    current: _Section | None = None
    anchor = ""
    for line in text.splitlines():
        if found := _ANCHOR.search(line):
            anchor = found["name"]
        elif line.startswith("### "):
            current = _Section(line[4:].strip(), anchor)
            sections.append(current)
        elif line.startswith(("# ", "## ")):
            current = None  # the table of contents and the scalar table belong to no message
        elif current is not None and line.startswith("|"):
            cells = _cells(line)
            if current.header is None:
                current.header = cells
            elif not all(set(cell) <= set("-: ") for cell in cells):
                current.rows.append(cells)
    return sections


def parse_seed_markdown(text: str) -> SeedSchema:
    """Read the messages and services of a protoc-gen-doc page; refuse anything this parser does not understand.

    Field numbers are not in the page: they are the order of the table, which is the order protoc-gen-doc took them
    from the descriptor, i.e. the declaration order of the seed (numbered 1, 2, 3... there).
    """
    packages: set[str] = set()
    messages: dict[str, list[SeedField]] = {}
    services: dict[str, list[SeedMethod]] = {}
    for section in _sections(text):
        suffix = "-" + section.name
        if not section.anchor.endswith(suffix):
            raise ValueError(f"### {section.name} has no anchor naming it (found {section.anchor!r})")
        packages.add(section.anchor.removesuffix(suffix).replace("-", "."))
        if section.header is None or section.header == MESSAGE_HEADER:
            fields = []
            for name, type_cell, label, description in section.rows:
                type_name, stream = _type_of(type_cell)
                if stream or label not in {"", "optional", "repeated"} or not name.isidentifier():
                    raise ValueError(f"message {section.name}: cannot read field row {name!r} {type_cell!r} {label!r}")
                fields.append(SeedField(name, type_name, label, html.unescape(description)))
            messages[section.name] = fields
        elif section.header == SERVICE_HEADER:
            methods = []
            for name, request_cell, response_cell, _description in section.rows:
                request, client_streaming = _type_of(request_cell)
                response, server_streaming = _type_of(response_cell)
                methods.append(SeedMethod(name, request, response, client_streaming, server_streaming))
            services[section.name] = methods
        else:
            raise ValueError(f"### {section.name}: unknown table {section.header} (enums and extensions unsupported)")
    if len(packages) != 1:
        raise ValueError(f"expected one proto package on the page, found {sorted(packages)}")
    return SeedSchema(packages.pop(), messages, services)


def proto_source(schema: SeedSchema) -> str:
    """The proto3 text of the schema; every type used must be a scalar or a message of the page."""

    def known(type_name: str) -> str:
        if type_name not in SCALAR_TYPES and type_name not in schema.messages:
            raise ValueError(f"type {type_name!r} is neither a scalar nor a message of the seed")
        return type_name

    lines = [
        f"// Rebuilt by tests/test_seed_client.py from {SEED_DOC.name} alone.",
        'syntax = "proto3";',
        "",
        f"package {schema.package};",
    ]
    for name, fields in schema.messages.items():
        lines += ["", f"message {name} {{"]
        for number, f in enumerate(fields, start=1):
            label = f"{f.label} " if f.label else ""
            comment = f"  // {' '.join(f.description.split())}" if f.description.strip() else ""
            lines.append(f"  {label}{known(f.type)} {f.name} = {number};{comment}")
        lines.append("}")
    for name, methods in schema.services.items():
        lines += ["", f"service {name} {{"]
        for m in methods:
            request = ("stream " if m.client_streaming else "") + known(m.request)
            response = ("stream " if m.server_streaming else "") + known(m.response)
            lines.append(f"  rpc {m.name}({request}) returns ({response});")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _import_private(name: str) -> ModuleType:
    """Import a generated module with its own descriptor pool.

    conftest already imported the project's stubs, which put `taskqueue.Ack` etc. in protobuf's default pool; the
    seed defines the same full names (it must: they are on the wire), and the default pool refuses duplicates. A real
    seed client is its own process, so a private pool is the faithful equivalent inside this one.
    """
    pool = descriptor_pool.DescriptorPool()
    sys.modules.pop(name, None)
    with mock.patch.object(descriptor_pool, "Default", lambda: pool):
        return importlib.import_module(name)


@dataclass(frozen=True)
class SeedModules:
    schema: SeedSchema
    proto_text: str
    pb: ModuleType
    grpc: ModuleType


def compile_seed(out: Path) -> Iterator[SeedModules]:
    """Parse the seed page, write `seedqueue.proto` into `out`, compile it with grpc_tools and import the result;
    the modules are forgotten again when the generator resumes (a module-scoped fixture's body)."""
    schema = parse_seed_markdown(SEED_DOC.read_text())
    text = proto_source(schema)
    proto = out / f"{PROTO_NAME}.proto"
    proto.write_text(text)
    include = str(resources.files("grpc_tools") / "_proto")  # the well-known types, as `python -m grpc_tools` adds
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{out}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", str(proto)]
    )
    assert code == 0, f"protoc refused the proto rebuilt from the seed:\n{text}"
    sys.path.insert(0, str(out))
    try:
        pb = _import_private(f"{PROTO_NAME}_pb2")
        stubs = importlib.import_module(f"{PROTO_NAME}_pb2_grpc")  # uses the pb module imported just above
    finally:
        sys.path.remove(str(out))
    yield SeedModules(schema, text, pb, stubs)
    for name in (f"{PROTO_NAME}_pb2", f"{PROTO_NAME}_pb2_grpc"):
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def seed_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedModules]:
    yield from compile_seed(tmp_path_factory.mktemp("seed_stubs"))


# --- a seed client --------------------------------------------------------------------------------------------------


@dataclass
class SeedClient:
    """The seed stubs on a plain channel; `call` adds the bearer token, as the server demands on every RPC."""

    pb: ModuleType
    stub: Any
    metadata: tuple[tuple[str, str], ...]

    def call(self, method: str, request: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", CALL_TIMEOUT)
        return getattr(self.stub, method)(request, metadata=self.metadata, **kwargs)

    def submit(self, command: str, container: str = "") -> int:
        return self.call("SubmitTask", self.pb.TaskRequest(command=command, container=container)).task_id

    def register(self, name: str, concurrency: int | None = None) -> int:
        info = self.pb.WorkerInfo(name=name)
        if concurrency is not None:
            info.concurrency = concurrency
        return self.call("RegisterWorker", info).worker_id

    def ping(self, worker_id: int) -> Any:
        return self.call("PingAndTakeNewTasks", self.pb.WorkerId(worker_id=worker_id))

    def set_status(self, task_id: int, letter: str) -> bool:
        return self.call("UpdateTaskStatus", self.pb.TaskStatusUpdate(task_id=task_id, new_status=letter)).success

    def send_logs(self, chunks: list[tuple[int, str, str]]) -> bool:
        messages = [self.pb.TaskLog(task_id=t, log_type=kind, log_text=text) for t, kind, text in chunks]
        return self.call("SendTaskLogs", iter(messages)).success

    def statuses(self, status_filter: str | None = None) -> dict[int, str]:
        request = (
            self.pb.ListTasksRequest()
            if status_filter is None
            else self.pb.ListTasksRequest(status_filter=status_filter)
        )
        return {task.task_id: task.status for task in self.call("ListTasks", request).tasks}

    def workers(self) -> dict[int, tuple[str, int]]:
        return {
            w.worker_id: (w.name, w.concurrency) for w in self.call("ListWorkers", self.pb.ListWorkersRequest()).workers
        }

    def logs(self, task_id: int) -> dict[str, str]:
        """Everything StreamTaskLogs sends for a task, joined per log_type; returns once the stream ends."""
        joined: dict[str, str] = {}
        for chunk in self.call("StreamTaskLogs", self.pb.TaskId(task_id=task_id)):
            assert chunk.task_id == task_id
            joined[chunk.log_type] = joined.get(chunk.log_type, "") + chunk.log_text
        return joined


def plaintext_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server started with --insecure, as for scitq's own client and worker, which speak plaintext."""
    proc = start_server(tmp_path / "state", "--insecure", "--worker-timeout", "3", "--reap-interval", "0.5")
    yield proc
    if proc.process.poll() is None:
        proc.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """This module's server, in place of conftest's (TLS): the seed client speaks plaintext."""
    yield from plaintext_server(tmp_path)


@pytest.fixture
def seed(seed_modules: SeedModules, server: ServerProcess) -> Iterator[SeedClient]:
    """A seed client on a plain insecure channel to a fresh server: nothing of tqhpc's own client code is used."""
    access = server.access
    channel = grpc.insecure_channel(access.address)
    yield SeedClient(
        seed_modules.pb, seed_modules.grpc.TaskQueueStub(channel), (("authorization", f"bearer {access.token}"),)
    )
    channel.close()


def rpc_error(call: Callable[[], object], code: grpc.StatusCode, *mentions: str) -> str:
    """Run `call`, which must fail with `code` and a readable message naming each of `mentions`; return the message."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err: Any = caught.value
    assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
    details = err.details() or ""
    assert details.strip(), f"{code} without a message"
    for text in mentions:
        assert text in details, f"{text!r} is not in the message {details!r}"
    return details


def take_tasks(seed: SeedClient, worker_id: int, expected: int) -> list[int]:
    """Ping once and check the server handed exactly `expected` tasks in status A; return their ids, oldest first."""
    reply = seed.ping(worker_id)
    assert [task.status for task in reply.tasks] == ["A"] * expected
    return [task.task_id for task in reply.tasks]


# --- the page and the stubs -----------------------------------------------------------------------------------------


def test_the_seed_page_rebuilds_the_whole_protocol(seed_modules: SeedModules) -> None:
    """All 17 messages and 10 RPCs come out of the page, with the labels, types and streams it shows."""
    schema = seed_modules.schema
    toc = re.findall(r"^ {4}- \[(\w+)\]\(#taskqueue-\1\)$", SEED_DOC.read_text(), re.MULTILINE)
    assert len(schema.messages) == 17
    assert sorted(schema.messages) == sorted(set(toc) - set(schema.services))
    assert schema.package == "taskqueue"
    assert list(schema.services) == ["TaskQueue"]
    methods = {m.name: m for m in schema.services["TaskQueue"]}
    assert len(methods) == 10
    assert methods["SendTaskLogs"] == SeedMethod("SendTaskLogs", "TaskLog", "Ack", True, False)
    assert methods["StreamTaskLogs"] == SeedMethod("StreamTaskLogs", "TaskId", "TaskLog", False, True)
    assert [m.name for m in methods.values() if m.client_streaming or m.server_streaming] == [
        "SendTaskLogs",
        "StreamTaskLogs",
    ]
    assert schema.messages["ListWorkersRequest"] == []
    assert schema.messages["WorkerInfo"] == [
        SeedField("name", "string", "", ""),
        SeedField("concurrency", "uint32", "optional", ""),
    ]
    assert schema.messages["TaskList"] == [SeedField("tasks", "Task", "repeated", "")]
    assert schema.messages["TaskLog"][1].description == "'O' for stdout, 'E' for stderr"
    assert "  optional string status_filter = 1;" in seed_modules.proto_text
    assert "  rpc SendTaskLogs(stream TaskLog) returns (Ack);" in seed_modules.proto_text

    pb = seed_modules.pb
    service = pb.DESCRIPTOR.services_by_name["TaskQueue"]
    assert service.full_name == "taskqueue.TaskQueue"
    assert [m.name for m in service.methods] == list(methods)
    assert pb.WorkerRequest.DESCRIPTOR.fields_by_name["region_id"].number == 8
    assert pb.WorkerInfo.DESCRIPTOR.fields_by_name["concurrency"].has_presence
    assert not pb.WorkerInfo.DESCRIPTOR.fields_by_name["name"].has_presence
    with grpc.insecure_channel("127.0.0.1:9") as channel:  # never connected: only the stub's attributes are checked
        stub = seed_modules.grpc.TaskQueueStub(channel)
        assert all(callable(getattr(stub, name)) for name in methods)
    assert "prefetch" not in pb.WorkerInfo.DESCRIPTOR.fields_by_name  # the seed client cannot ask for a prefetch


def test_the_parser_refuses_what_it_cannot_read() -> None:
    """A page with an enum table or an unreadable type must fail loudly, not yield a silently wrong proto."""
    enum_page = (
        '<a name="pkg-Colour"></a>\n\n### Colour\n\n'
        "| Name | Number | Description |\n| --- | --- | --- |\n| RED | 0 | |\n"
    )
    with pytest.raises(ValueError, match="unknown table"):
        parse_seed_markdown(enum_page)
    bad_type = '<a name="pkg-M"></a>\n\n### M\n\n' + "| Field | Type | Label | Description |\n| - | - | - | - |\n"
    with pytest.raises(ValueError, match="cannot read a type"):
        parse_seed_markdown(bad_type + "| x | [map<a,b>](#m) |  |  |\n")
    with pytest.raises(ValueError, match="neither a scalar nor a message"):
        proto_source(parse_seed_markdown(bad_type + "| x | [Missing](#pkg-Missing) |  |  |\n"))


# --- the ten RPCs ---------------------------------------------------------------------------------------------------


def test_every_rpc_needs_the_token(seed: SeedClient) -> None:
    """Without the authorization metadata each of the ten RPCs is refused with UNAUTHENTICATED."""
    pb = seed.pb
    requests: dict[str, Any] = {
        "SubmitTask": pb.TaskRequest(command="true"),
        "RegisterWorker": pb.WorkerInfo(name="w"),
        "PingAndTakeNewTasks": pb.WorkerId(worker_id=1),
        "UpdateTaskStatus": pb.TaskStatusUpdate(task_id=1, new_status="R"),
        "SendTaskLogs": iter([pb.TaskLog(task_id=1, log_type="O", log_text="x")]),
        "StreamTaskLogs": pb.TaskId(task_id=1),
        "ListTasks": pb.ListTasksRequest(),
        "ListWorkers": pb.ListWorkersRequest(),
        "CreateWorker": pb.WorkerRequest(provider="local", number=1, concurrency=1),
        "DeleteWorker": pb.WorkerId(worker_id=1),
    }
    assert sorted(requests) == sorted(m.name for m in parse_seed_markdown(SEED_DOC.read_text()).services["TaskQueue"])
    for name, request in requests.items():
        with pytest.raises(grpc.RpcError) as caught:
            reply = getattr(seed.stub, name)(request, timeout=CALL_TIMEOUT)
            if name == "StreamTaskLogs":
                list(reply)  # a server stream reports its status when read
        err: Any = caught.value
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, f"{name}: {err.code()} {err.details()}"
    wrong = (("authorization", "bearer not-the-token"),)
    with pytest.raises(grpc.RpcError) as caught:
        seed.stub.ListTasks(pb.ListTasksRequest(), metadata=wrong, timeout=CALL_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    # None of the refused calls did anything: no task, no worker (CreateWorker started nothing).
    assert seed.statuses() == {}
    assert seed.workers() == {}


def test_submit_task_and_list_tasks(seed: SeedClient) -> None:
    """SubmitTask returns new ids and refuses empty or over-long commands; ListTasks shows all, or one status."""
    first = seed.submit("echo one")
    second = seed.submit("echo two", container="docker://alpine:3")
    assert second > first > 0
    longest = seed.submit("#" * MAX_COMMAND_BYTES)
    rpc_error(lambda: seed.submit(""), grpc.StatusCode.INVALID_ARGUMENT, "empty")
    rpc_error(lambda: seed.submit(" \t\n"), grpc.StatusCode.INVALID_ARGUMENT, "empty")
    rpc_error(lambda: seed.submit("#" * (MAX_COMMAND_BYTES + 1)), grpc.StatusCode.INVALID_ARGUMENT, "131072 bytes")

    tasks = {t.task_id: t for t in seed.call("ListTasks", seed.pb.ListTasksRequest()).tasks}
    assert sorted(tasks) == [first, second, longest]
    assert (tasks[first].command, tasks[first].container, tasks[first].status) == ("echo one", "", "P")
    assert (tasks[second].command, tasks[second].container) == ("echo two", "docker://alpine:3")
    assert len(tasks[longest].command) == MAX_COMMAND_BYTES

    # Move tasks into S, F and leave one P, then filter.
    worker = seed.register("filter-worker", concurrency=2)
    assert take_tasks(seed, worker, 2) == [first, second]
    for letter in "RS":
        assert seed.set_status(first, letter)
    for letter in "RF":
        assert seed.set_status(second, letter)
    assert seed.statuses() == {first: "S", second: "F", longest: "P"}
    assert seed.statuses("S") == {first: "S"}
    assert seed.statuses("F") == {second: "F"}
    assert seed.statuses("P") == {longest: "P"}
    assert seed.statuses("R") == {}


def test_a_seed_worker_takes_at_most_its_concurrency(seed: SeedClient) -> None:
    """RegisterWorker + PingAndTakeNewTasks: oldest first, no more than concurrency (no prefetch), A tasks resent."""
    tasks = [seed.submit(f"echo {i}") for i in range(4)]
    worker = seed.register("seed-worker", concurrency=2)
    plain = seed.register("plain-worker")  # concurrency is optional in WorkerInfo
    assert plain != worker
    listed = seed.workers()
    assert listed[worker] == ("seed-worker", 2)
    assert listed[plain][0] == "plain-worker"
    assert listed[plain][1] >= 1

    reply = seed.ping(worker)
    assert reply.concurrency == 2
    assert [(t.task_id, t.status, t.command) for t in reply.tasks] == [
        (tasks[0], "A", "echo 0"),
        (tasks[1], "A", "echo 1"),
    ]
    assert take_tasks(seed, worker, 2) == tasks[:2]  # still A: sent again, nothing more
    assert seed.statuses() == {tasks[0]: "A", tasks[1]: "A", tasks[2]: "P", tasks[3]: "P"}

    assert seed.set_status(tasks[0], "C")
    assert take_tasks(seed, worker, 1) == [tasks[1]]  # accepted tasks are no longer resent, but still held
    assert seed.set_status(tasks[0], "R")
    assert seed.set_status(tasks[0], "S")
    assert take_tasks(seed, worker, 2) == [tasks[1], tasks[2]]  # one slot freed: the next oldest
    assert seed.statuses("P") == {tasks[3]: "P"}

    rpc_error(lambda: seed.ping(999_999), grpc.StatusCode.NOT_FOUND, "999999")


def test_update_task_status_follows_the_status_model(seed: SeedClient) -> None:
    """Every legal worker move succeeds, repeats are no-ops, and every illegal letter or move is refused by name."""
    tasks = [seed.submit(f"echo {i}") for i in range(6)]
    worker = seed.register("status-worker", concurrency=6)
    assert take_tasks(seed, worker, 6) == tasks
    t_full, t_run_fail, t_fail, t_accept_fail, t_repeat, t_idle = tasks

    for letter in "CCRSS":  # A->C, C (repeat), C->R, R->S, S (repeat)
        assert seed.set_status(t_full, letter)
    for letter in "RRF":  # A->R, R (repeat), R->F
        assert seed.set_status(t_run_fail, letter)
    assert seed.set_status(t_fail, "F")  # A->F
    for letter in "CF":  # A->C, C->F
        assert seed.set_status(t_accept_fail, letter)
    assert seed.set_status(t_repeat, "C")
    expected = {t_full: "S", t_run_fail: "F", t_fail: "F", t_accept_fail: "F", t_repeat: "C", t_idle: "A"}
    assert seed.statuses() == expected

    for letter in "PAWX":  # letters only the server sets
        rpc_error(lambda letter=letter: seed.set_status(t_idle, letter), grpc.StatusCode.INVALID_ARGUMENT, letter)
    rpc_error(lambda: seed.set_status(t_idle, "Z"), grpc.StatusCode.INVALID_ARGUMENT, "'Z'")
    rpc_error(lambda: seed.set_status(t_idle, "S"), grpc.StatusCode.INVALID_ARGUMENT, f"task {t_idle}")  # A->S
    rpc_error(lambda: seed.set_status(t_full, "R"), grpc.StatusCode.INVALID_ARGUMENT, f"task {t_full}")  # S->R
    rpc_error(lambda: seed.set_status(t_fail, "S"), grpc.StatusCode.INVALID_ARGUMENT, f"task {t_fail}")  # F->S
    rpc_error(lambda: seed.set_status(t_full, "F"), grpc.StatusCode.INVALID_ARGUMENT, f"task {t_full}")  # S->F
    rpc_error(lambda: seed.set_status(999_999, "R"), grpc.StatusCode.NOT_FOUND, "999999")
    assert seed.statuses() == expected  # nothing refused changed anything
    assert seed.set_status(t_repeat, "S")  # C->S: scitq's worker skips R
    assert seed.statuses()[t_repeat] == "S"


def test_send_task_logs_and_replay_a_finished_task(seed: SeedClient) -> None:
    """SendTaskLogs stores O and E chunks, refusing bad types and unknown tasks; StreamTaskLogs replays them exactly."""
    task = seed.submit("produce output")
    worker = seed.register("log-worker", concurrency=1)
    assert take_tasks(seed, worker, 1) == [task]
    assert seed.set_status(task, "R")

    assert seed.send_logs([(task, "O", "line 1\n"), (task, "E", "warn: é\n"), (task, "O", "line 2 ✓\n")])
    # A bad log_type is refused, and the good chunks of the same stream are still kept.
    rpc_error(
        lambda: seed.send_logs([(task, "O", "line 3\n"), (task, "Q", "lost\n"), (task, "E", "err 2\n")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'Q'",
    )
    rpc_error(lambda: seed.send_logs([(999_999, "O", "nobody\n")]), grpc.StatusCode.NOT_FOUND, "999999")
    assert seed.send_logs([(task, "O", "last, no newline")])
    assert seed.set_status(task, "S")

    assert seed.logs(task) == {"O": "line 1\nline 2 ✓\nline 3\nlast, no newline", "E": "warn: é\nerr 2\n"}
    assert seed.logs(task) == seed.logs(task)  # replay is repeatable
    rpc_error(lambda: seed.logs(999_999), grpc.StatusCode.NOT_FOUND, "999999")


def test_stream_task_logs_follows_a_running_task(seed: SeedClient) -> None:
    """A follower started while the task runs gets earlier and later output, and its stream ends at S."""
    task = seed.submit("long job")
    worker = seed.register("follow-worker", concurrency=1)
    assert take_tasks(seed, worker, 1) == [task]
    assert seed.set_status(task, "R")
    assert seed.send_logs([(task, "O", "before\n")])

    received: list[tuple[str, str]] = []
    failures: list[BaseException] = []

    def follow() -> None:
        try:
            for chunk in seed.call("StreamTaskLogs", seed.pb.TaskId(task_id=task), timeout=60):
                received.append((chunk.log_type, chunk.log_text))
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    def stdout_alive() -> str:
        seed.ping(worker)  # keep the worker alive (the test server declares it lost after 3 s of silence)
        return "".join(text for kind, text in received if kind == "O")

    wait_until(lambda: stdout_alive() == "before\n", what="the follower to replay the stored output")
    assert follower.is_alive()  # the task is R: the stream must stay open
    assert seed.send_logs([(task, "O", "after\n"), (task, "E", "oops\n")])
    wait_until(lambda: stdout_alive() == "before\nafter\n", what="the follower to receive live output")
    wait_until(lambda: ("E", "oops\n") in received, what="the follower to receive live stderr")
    assert follower.is_alive()

    assert seed.set_status(task, "S")
    follower.join(30)
    assert not follower.is_alive(), "StreamTaskLogs did not end after the task succeeded"
    assert failures == []
    assert [text for kind, text in received if kind == "O"] in (["before\n", "after\n"], ["before\nafter\n"])
    assert "".join(text for kind, text in received if kind == "E") == "oops\n"


def test_delete_worker_requeues_its_tasks(seed: SeedClient) -> None:
    """DeleteWorker sends the worker's unfinished tasks back to P and refuses its later pings."""
    running, assigned, done = (seed.submit(f"echo {i}") for i in range(3))
    worker = seed.register("doomed", concurrency=3)
    assert take_tasks(seed, worker, 3) == [running, assigned, done]
    assert seed.set_status(running, "R")
    for letter in "RS":
        assert seed.set_status(done, letter)

    assert seed.call("DeleteWorker", seed.pb.WorkerId(worker_id=worker)).success
    assert seed.statuses() == {running: "P", assigned: "P", done: "S"}
    rpc_error(lambda: seed.ping(worker), grpc.StatusCode.FAILED_PRECONDITION, f"worker {worker}")
    assert worker not in seed.workers()  # a seed client sees no state: only live workers are listed
    rpc_error(
        lambda: seed.call("DeleteWorker", seed.pb.WorkerId(worker_id=999_999)), grpc.StatusCode.NOT_FOUND, "999999"
    )

    heir = seed.register("heir", concurrency=2)
    assert take_tasks(seed, heir, 2) == [running, assigned]  # really pending again: the next worker gets them


def test_create_worker_starts_a_local_worker_that_runs_tasks(seed: SeedClient, server: ServerProcess) -> None:
    """CreateWorker(local) starts a real worker that runs a submitted task; DeleteWorker stops it."""
    pb = seed.pb
    rpc_error(
        lambda: seed.call("CreateWorker", pb.WorkerRequest(provider="nimbus", number=1, concurrency=1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "nimbus",
    )
    assert seed.workers() == {}  # the refused provider reserved nothing

    ids = list(seed.call("CreateWorker", pb.WorkerRequest(provider="local", number=1, concurrency=1)).worker_ids)
    assert len(ids) == 1
    (local,) = ids
    assert local in seed.workers()

    task = seed.submit("echo seed-local")
    try:
        wait_until(lambda: seed.statuses().get(task) == "S", timeout=30, what="the local worker to run the task")
    except pytest.fail.Exception:
        worker_log = server.state_dir / "workers" / f"worker-{local}.log"
        output = worker_log.read_text(errors="replace") if worker_log.exists() else "(no worker log)"
        pytest.fail(f"task {task} is {seed.statuses().get(task)}; worker log:\n{output}\nserver:\n{server.log()}")
    assert seed.logs(task).get("O") == "seed-local\n"
    assert seed.statuses("S") == {task: "S"}

    assert seed.call("DeleteWorker", pb.WorkerId(worker_id=local)).success
    assert local not in seed.workers()

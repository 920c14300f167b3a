"""Hostile input on every RPC of the service: generated messages of the right shape with wild values, undecodable
bytes, messages cut half-way, oversized fields, streams cut off. The server must answer each with a status that
names the caller's mistake (never UNKNOWN or INTERNAL), stay up, and keep its store sound.

The generator is seeded, so a failure replays. Messages that would start real work are steered off it:
CreateWorker never names a provider this server has (a valid "local" with a random number would start up to a
thousand worker processes on the test machine).
"""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import ServerProcess
from google.protobuf.descriptor import FieldDescriptor as F

from tqhpc._proto import pb
from tqhpc.channel import open_channel

SEED = 20261129
MESSAGES = 10_000
ACCEPTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,  # a call this test cut off
        grpc.StatusCode.DEADLINE_EXCEEDED,  # a stream that follows output, or waits for more, until our deadline
    }
)
SERVICE = pb.DESCRIPTOR.services_by_name["TaskQueue"]

_INTS = [0, 1, 2, 3, 7, 42, 2**31 - 1, 2**32 - 1]
_SIGNED = [-1, -(2**31), 2**63 - 1, -(2**63)]
_FLOATS = [0.0, -1.0, 1e-9, 0.5, 3600.0, 1e308, float("inf"), float("-inf"), float("nan")]
_STRINGS = ["", "a", "S", "R", "F", "O", "E", "stdout", "x" * 300, "\x00", "/tmp", "../..", "1-3", "é☃", "true",
            "local ", "short", "name with spaces", "-" * 5000]  # fmt: skip


class Generator:
    """Random messages of a given type, field by field, from the descriptor."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def message(self, descriptor: Any, depth: int = 0) -> Any:
        message = pb.__dict__.get(descriptor.name) or _class_of(descriptor)
        made = message()
        for field in descriptor.fields:
            if self.random.random() < 0.45:
                continue
            self._fill(made, field, depth)
        if descriptor.name == "WorkerRequest":
            made.provider = "fuzz-" + made.provider  # never a provider this server runs (see the module's note)
        return made

    def _fill(self, made: Any, field: Any, depth: int) -> None:
        if field.message_type is not None:
            if depth >= 2:
                return
            if field.is_repeated:
                for _ in range(self.random.randint(0, 3)):
                    getattr(made, field.name).add().CopyFrom(self.message(field.message_type, depth + 1))
            else:
                getattr(made, field.name).CopyFrom(self.message(field.message_type, depth + 1))
            return
        if field.is_repeated:
            count = self.random.choice([0, 1, 2, 5, 300])
            getattr(made, field.name).extend(self.value(field) for _ in range(count))
        else:
            setattr(made, field.name, self.value(field))

    def value(self, field: Any) -> Any:
        kind = field.type
        pick = self.random.random() < 0.7
        if kind in (F.TYPE_UINT32, F.TYPE_FIXED32):
            return self.random.choice(_INTS) if pick else self.random.randrange(2**32)
        if kind in (F.TYPE_UINT64, F.TYPE_FIXED64):
            return self.random.choice([*_INTS, 2**64 - 1]) if pick else self.random.randrange(2**64)
        if kind in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
            return self.random.choice([i for i in _INTS + _SIGNED if -(2**31) <= i < 2**31])
        if kind in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
            return self.random.choice(_INTS + _SIGNED)
        if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            value = self.random.choice(_FLOATS) if pick else self.random.uniform(-1e6, 1e6)
            return value if kind == F.TYPE_DOUBLE or math.isnan(value) or abs(value) < 3e38 else 0.0
        if kind == F.TYPE_BOOL:
            return self.random.random() < 0.5
        if kind == F.TYPE_STRING:
            return self.random.choice(_STRINGS) if pick else self._text()
        if kind == F.TYPE_BYTES:
            return self.random.randbytes(self.random.choice([0, 1, 7, 4096]))
        if kind == F.TYPE_ENUM:
            return self.random.choice([v.number for v in field.enum_type.values])
        raise AssertionError(f"no generator for field {field.full_name}")

    def _text(self) -> str:
        return "".join(chr(self.random.randrange(32, 0x2FFF)) for _ in range(self.random.randint(1, 40)))

    def wire(self, descriptor: Any) -> bytes:
        """Bytes for one message: mostly a generated one, sometimes cut half-way, oversized, or noise."""
        roll = self.random.random()
        data = self.message(descriptor).SerializeToString()
        if roll < 0.08:
            return self.random.randbytes(self.random.randint(1, 64))  # noise
        if roll < 0.16 and len(data) > 1:
            return data[: len(data) // 2]  # cut half-way
        if roll < 0.18:
            big = self.message(descriptor)
            for field in descriptor.fields:
                if field.type == F.TYPE_STRING and not field.is_repeated:
                    setattr(big, field.name, "y" * (3 * 1024 * 1024))  # oversized
                    break
            return big.SerializeToString()
        return data


def _class_of(descriptor: Any) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


class Outcomes:
    """The status of every call, and the first few that were not acceptable."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.bad: list[str] = []
        self.messages = 0
        self._lock = threading.Lock()

    def note(self, method: str, code: grpc.StatusCode, details: str | None) -> None:
        with self._lock:
            self.codes[code.name] = self.codes.get(code.name, 0) + 1
            if code not in ACCEPTED and len(self.bad) < 20:
                self.bad.append(f"{method}: {code.name}: {details}")


def _paths() -> Iterator[tuple[str, Any]]:
    for method in SERVICE.methods:
        yield f"/{SERVICE.full_name}/{method.name}", method


def _call(
    channel: grpc.Channel, metadata: Any, path: str, method: Any, wires: list[bytes], cut: bool, out: Outcomes
) -> None:
    """One call with these messages (a unary call takes the first); `cut`: the test cancels it midway."""
    out.messages += len(wires)
    try:
        if method.client_streaming or method.server_streaming:
            _streamed(channel, metadata, path, method, wires, cut)
        else:
            call = channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
            call(wires[0], metadata=metadata, timeout=10)
        out.note(method.name, grpc.StatusCode.OK, None)
    except grpc.FutureCancelledError:
        out.note(method.name, grpc.StatusCode.CANCELLED, None)
    except grpc.RpcError as err:
        out.note(method.name, err.code(), err.details())


def _streamed(channel: grpc.Channel, metadata: Any, path: str, method: Any, wires: list[bytes], cut: bool) -> None:
    kinds = {
        (True, True): channel.stream_stream,
        (True, False): channel.stream_unary,
        (False, True): channel.unary_stream,
    }
    multi = kinds[(method.client_streaming, method.server_streaming)](
        path, request_serializer=_identity, response_deserializer=_identity
    )
    if not method.server_streaming:
        future = multi.future(iter(wires), metadata=metadata, timeout=10)
        if cut:
            future.cancel()
        future.result()
        return
    responses = multi(iter(wires) if method.client_streaming else wires[0], metadata=metadata, timeout=0.5)
    for number, _ in enumerate(responses):
        if cut or number > 50:
            responses.cancel()
            break


def _generated(gen: Generator, method: Any) -> tuple[list[bytes], bool]:
    """1-6 messages for a streaming call, one for a unary one; a streaming call is cut off three times in ten."""
    count = gen.random.randint(1, 6) if method.client_streaming else 1
    wires = [gen.wire(method.input_type) for _ in range(count)]
    streaming = method.client_streaming or method.server_streaming
    return wires, streaming and gen.random.random() < 0.3


def _identity(data: bytes) -> bytes:
    return data  # messages travel as the generator made them, valid or not


def test_ten_thousand_hostile_messages_on_every_rpc(server: ServerProcess) -> None:
    gen = Generator(SEED)
    out = Outcomes()
    channel = open_channel(server.access)
    methods = list(_paths())
    assert len(methods) == len(SERVICE.methods) >= 19
    try:
        while out.messages < MESSAGES:
            for path, method in methods:
                _call(channel, server.access.metadata, path, method, *_generated(gen, method), out)
    finally:
        channel.close()
    assert out.bad == [], f"{len(out.bad)} calls answered badly (codes: {out.codes})"
    print(f"{out.messages} messages; answers: {out.codes}")
    assert out.codes["OK"] > 100 and out.codes["INVALID_ARGUMENT"] > 100  # both kinds of input were made
    assert server.process.poll() is None, "the server died"
    with sqlite3.connect(server.state_dir / "tqhpc.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Still serving: a plain submit and read work after all that.
    stub_channel = open_channel(server.access)
    from tqhpc._proto import rpc

    stub = rpc.TaskQueueStub(stub_channel)
    task_id = stub.SubmitTask(pb.TaskRequest(command="true"), metadata=server.access.metadata).task_id
    assert stub.GetTask(pb.TaskId(task_id=task_id), metadata=server.access.metadata).task_id == task_id
    stub_channel.close()


def test_every_rpc_refuses_a_caller_without_the_token_or_with_a_wrong_one(server: ServerProcess) -> None:
    """Each RPC of the service, streams included, found from the service descriptor so a new one cannot be missed;
    the request is a valid empty message, so only the missing or wrong token can be why it is refused."""
    wrong = (("authorization", "bearer not-the-token"),)
    refused: dict[str, set[str]] = {}
    channel = open_channel(server.access)
    try:
        for metadata, what in ((None, "none"), (wrong, "wrong")):
            for path, method in _paths():
                out = Outcomes()
                _call(channel, metadata, path, method, [b""], False, out)
                refused.setdefault(method.name, set()).update(f"{what}:{code}" for code in out.codes)
    finally:
        channel.close()
    assert len(refused) == len(SERVICE.methods)
    for name, codes in refused.items():
        assert codes == {"none:UNAUTHENTICATED", "wrong:UNAUTHENTICATED"}, f"{name}: {codes}"


def test_a_worker_claiming_a_huge_concurrency_gets_its_tasks_at_once(server: ServerProcess, stub) -> None:
    """The dispatch looks up only the sizes pending tasks have: a concurrency of 2**32 - 1 once cost a ping four
    billion index lookups, and the server's store thread hung on it (the fuzz test found it)."""
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="huge", concurrency=2**32 - 1)).worker_id
    ids = [stub.SubmitTask(pb.TaskRequest(command="true", slots=slots)).task_id for slots in (1, 3, 1000)]
    started = time.monotonic()
    tasks = stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker_id), timeout=10).tasks
    assert sorted(task.task_id for task in tasks) == ids
    assert time.monotonic() - started < 2


def test_figures_past_what_the_store_holds_are_refused_by_name(server: ServerProcess, stub) -> None:
    """uint64 on the wire, signed 64-bit integers in SQLite: such a ping answered UNKNOWN (an OverflowError)."""
    worker_id = stub.RegisterWorker(pb.WorkerInfo(name="w", concurrency=1)).worker_id
    with pytest.raises(grpc.RpcError) as refused:
        stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker_id, stats=pb.WorkerStats(memory_used=2**64 - 1)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stats: memory_used = 18446744073709551615 is out of range" in refused.value.details()

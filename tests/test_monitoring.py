"""The standard gRPC health service and server reflection of a real server process, through grpc's own clients.

Both answer without the token, so that a site's monitoring and grpcurl can look at the server without the .proto and
without secrets; TaskQueue itself still refuses a call without it. Health follows the storage (NOT_SERVING while the
disk is full) and says NOT_SERVING as the server stops.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import grpc
import pytest
from conftest import ServerProcess, fill_disk, start_server, wait_until
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tqhpc import Client
from tqhpc._proto import pb
from tqhpc.channel import open_channel

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_health_answers_without_the_token(bare_channel: grpc.Channel) -> None:
    assert _health(bare_channel) == SERVING
    assert _health(bare_channel, "taskqueue.TaskQueue") == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        _health(bare_channel, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_describes_the_service_without_the_token(bare_channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(bare_channel)
    assert set(database.get_services()) == {
        "taskqueue.TaskQueue",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    pool = DescriptorPool(database)
    service = pool.FindServiceByName("taskqueue.TaskQueue")
    assert {"SubmitTask", "PingAndTakeNewTasks", "GetOverview", "StreamTasks"} <= set(service.methods_by_name)
    overview = service.methods_by_name["GetOverview"]
    assert (overview.input_type.full_name, overview.output_type.full_name) == (
        "taskqueue.OverviewRequest",
        "taskqueue.Overview",
    )
    task = pool.FindMessageTypeByName("taskqueue.Task")
    assert task.fields_by_name["status"].number == 4


def test_the_task_queue_itself_still_needs_the_token(bare_channel: grpc.Channel) -> None:
    submit = bare_channel.unary_unary(
        "/taskqueue.TaskQueue/SubmitTask",
        request_serializer=pb.TaskRequest.SerializeToString,
        response_deserializer=pb.TaskResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as refused:
        submit(pb.TaskRequest(command="true"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_says_not_serving_as_the_server_stops(server: ServerProcess, bare_channel: grpc.Channel) -> None:
    watch = health_pb2_grpc.HealthStub(bare_channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
    assert next(watch).status == SERVING
    server.stop(signal.SIGTERM)
    statuses = []
    with contextlib.suppress(grpc.RpcError):
        statuses.extend(message.status for message in watch)
    assert statuses[:1] == [NOT_SERVING]


def test_health_follows_a_full_disk(small_disk: Path) -> None:
    server = start_server(small_disk)
    try:
        channel = open_channel(server.access)
        with Client(server.access_file) as client:
            assert _health(channel) == SERVING
            filler = fill_disk(small_disk, leave=0)
            with pytest.raises(Exception, match="could not store"):
                client.submit_many([f"echo {'x' * 100_000} {i}" for i in range(100)])
            wait_until(lambda: _health(channel) == NOT_SERVING, timeout=10, what="health to say NOT_SERVING")
            assert _health(channel, "taskqueue.TaskQueue") == NOT_SERVING
            filler.unlink()

            def stores_and_serves() -> bool:
                client.submit("true")  # storage is said to work again after a write once it stayed quiet 3 s
                return _health(channel) == SERVING

            wait_until(stores_and_serves, timeout=20, interval=0.5, what="health to say SERVING again")
        channel.close()
    finally:
        server.stop()

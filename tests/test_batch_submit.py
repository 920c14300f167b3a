"""Batch submit: many tasks in one call, their ids in order, and bad batches refused whole with a clear message."""

from __future__ import annotations

import grpc
import pytest

from tqhpc import Client, ClientError, Status
from tqhpc._proto import pb
from tqhpc.specs import TaskSpec


def test_twenty_thousand_tasks_in_order(client: Client) -> None:
    first = client.submit("echo before")
    specs = [TaskSpec(f"echo {i}", name="big", array_id=str(i)) for i in range(20_000)]
    ids = client.submit_many(specs)
    assert ids == list(range(first + 1, first + 20_001))
    assert client.letters(ids) == "P" * 20_000
    tasks = client.tasks(name="big")
    assert [t.task_id for t in tasks] == ids
    assert [t.command for t in tasks[:3]] == ["echo 0", "echo 1", "echo 2"]
    assert tasks[-1].command == "echo 19999" and tasks[-1].array_id == "19999"
    assert {t.status for t in tasks} == {Status.PENDING}
    assert client.submit("echo after") == ids[-1] + 1


def test_dependencies_inside_a_batch_by_index(client: Client) -> None:
    ids = client.submit_many(
        [TaskSpec("echo a"), TaskSpec("echo b", after_index=(0,)), {"command": "c", "after_index": [0, 1]}]
    )
    tasks = client.tasks(ids=ids)
    assert [t.status for t in tasks] == [Status.PENDING, Status.WAITING, Status.WAITING]
    assert tasks[2].after == (ids[0], ids[1])
    assert "waiting for" in tasks[1].reason


@pytest.mark.parametrize(
    ("request_tasks", "message"),
    [
        ([pb.TaskRequest(command="echo a", after=[999_999])], "task 1 of the batch: no task 999999 to wait for"),
        ([pb.TaskRequest(command="echo a", after_batch_index=[0])], "depends on itself"),
        (
            [pb.TaskRequest(command="echo a", after_batch_index=[1]), pb.TaskRequest(command="b")],
            "which comes later",
        ),
        ([pb.TaskRequest(command="ok"), pb.TaskRequest(command="  ")], "task 2 of the batch: the command is empty"),
        ([pb.TaskRequest(command="ok", slots=100_000)], "slots must be between"),
        ([], "the batch holds no task"),
    ],
)
def test_bad_batches_are_refused_whole(stub, request_tasks, message) -> None:
    before = len(stub.ListTasks(pb.ListTasksRequest()).tasks)
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitTasks(pb.TaskBatch(tasks=request_tasks))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert len(stub.ListTasks(pb.ListTasksRequest()).tasks) == before  # nothing of the batch was stored


def test_a_spec_that_points_forward_is_refused_by_the_client(client: Client) -> None:
    with pytest.raises(ClientError, match="may only depend on earlier specs"):
        client.submit_many([TaskSpec("a", after_index=(1,)), TaskSpec("b")])
    with pytest.raises(ValueError, match="not a task spec"):
        client.submit_many([{"commmand": "typo"}])


def test_status_of_unknown_ids_is_refused(client: Client) -> None:
    with pytest.raises(ClientError, match="no task 424242"):
        client.letters([424242])
    with pytest.raises(ClientError, match="no task 424242"):
        client.status([424242])

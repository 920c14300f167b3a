"""Turn TaskRequest messages into checked `NewTask` values, one message or ten thousand at a time.

This is the hot path of a batch submit, so it reads each field once and leaves the expensive checks (the command's
byte length) to the cases that need them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._proto import pb
from ..errors import InvalidArgument
from ..limits import MAX_DEPENDENCIES
from ..store.taskflow import NewTask
from . import validate

MAX_BATCH_TASKS = 100_000
"""Tasks in one SubmitTasks call; the client sends bigger lists in several calls."""
MAX_SLOTS = 4096
MAX_RETRY = 1000


def new_task(request: pb.TaskRequest, index: int | None = None) -> NewTask:
    """The checked task; errors name the task's place in the batch (1-based) when it came in one."""
    try:
        command = request.command
        # Cheap checks first: most commands are short and plain, the byte count only matters near the limit.
        if len(command) * 4 > validate.MAX_COMMAND_BYTES or not command.strip() or "\0" in command:
            command = validate.command(command)
        container = validate.container(request.container) if request.container else ""
        name = validate.name(request.name, "task name") if request.name else ""
        array_id = validate.name(request.array_id, "array id") if request.array_id else ""
        slots = request.slots or 1
        if slots > MAX_SLOTS:
            raise InvalidArgument(f"slots must be between 1 and {MAX_SLOTS}, not {slots}")
        if request.retry > MAX_RETRY:
            raise InvalidArgument(f"retry must be at most {MAX_RETRY}, not {request.retry}")
        after = tuple(request.after)
        after_index = tuple(request.after_batch_index)
        if len(after) + len(after_index) > MAX_DEPENDENCIES:
            raise InvalidArgument(f"a task may depend on at most {MAX_DEPENDENCIES} others")
        timeout = validate.timeout(request.timeout) if request.timeout else 0.0
        memory_limit = validate.memory_limit(request.memory_limit) if request.memory_limit else 0
        time_request = validate.time_request(request.time_request) if request.time_request else 0.0
        cwd = validate.cwd(request.cwd) if request.cwd else ""
        if index is None and after_index:
            raise InvalidArgument("after_batch_index only has a meaning in SubmitTasks")
    except InvalidArgument as err:
        if index is None:
            raise
        raise InvalidArgument(f"task {index + 1} of the batch: {err}") from None
    return NewTask(
        command,
        container,
        name,
        request.retry,
        after,
        after_index,
        slots,
        array_id,
        timeout,
        memory_limit,
        time_request,
        cwd,
    )


def new_tasks(requests: Sequence[pb.TaskRequest]) -> list[NewTask]:
    if not requests:
        raise InvalidArgument("the batch holds no task")
    if len(requests) > MAX_BATCH_TASKS:
        raise InvalidArgument(f"at most {MAX_BATCH_TASKS} tasks per SubmitTasks call, not {len(requests)}")
    return [new_task(request, index) for index, request in enumerate(requests)]

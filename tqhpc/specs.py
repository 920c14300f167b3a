"""What a task asks for, on the client side, and how a long list of them becomes SubmitTasks calls."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._proto import pb

BATCH_TASKS = 10_000
"""Tasks per SubmitTasks message: one transaction each on the server."""
BATCH_BYTES = 32 * 1024 * 1024
"""And at most about this many bytes of commands per message, well below the channel's message limit."""


@dataclass(frozen=True)
class TaskSpec:
    """One task to submit. `after` names existing task ids; `after_index` earlier specs of the same
    `submit_many` call, by position (for pipelines submitted in one go)."""

    command: str
    container: str = ""
    name: str = ""
    retry: int = 0
    after: tuple[int, ...] = ()
    after_index: tuple[int, ...] = ()
    slots: int = 1
    array_id: str = ""
    timeout: float = 0.0
    """Wall-clock seconds before the worker kills the task (0: the worker's default, if any)."""
    memory_limit: int = 0
    """Bytes of RSS over the task's process tree before the worker kills it (0: the worker's default, if any)."""
    time_request: float = 0.0
    """Seconds the task is expected to run at most; a Slurm worker with less walltime left never gets it."""
    cwd: str = ""
    """The directory the task runs in: "" for the directory current when it is submitted; a relative path is
    taken relative to that one."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further TaskRequest fields (e.g. timeout), set as they are on the message."""

    def to_message(self, caller_cwd: str = "") -> pb.TaskRequest:
        """The request; `caller_cwd` (the submitter's absolute current directory) anchors the task's directory."""
        message = pb.TaskRequest(command=self.command)
        cwd = task_directory(self.cwd, caller_cwd)
        if cwd:
            message.cwd = cwd
        for name in _SENT_WHEN_SET:
            value = getattr(self, name)
            if value:
                setattr(message, name, value)
        message.after.extend(self.after)
        if self.slots != 1:
            message.slots = self.slots
        for key, value in self.extra.items():
            setattr(message, key, value)
        return message


_SENT_WHEN_SET = ("container", "name", "retry", "array_id", "timeout", "memory_limit", "time_request")
"""TaskSpec fields that go into the request only when set: left out, the server's default (empty, 0) applies."""

SpecLike = TaskSpec | str | Mapping[str, Any]


def task_directory(cwd: str | os.PathLike[str], caller_cwd: str) -> str:
    """Where a task runs, as the absolute path the server wants: `cwd` taken relative to the caller's directory
    (as a shell's `cd` would, without resolving symbolic links), or the caller's directory itself."""
    path = os.fspath(cwd)
    return os.path.normpath(os.path.join(caller_cwd, path)) if path else caller_cwd


def as_spec(item: SpecLike) -> TaskSpec:
    """A TaskSpec from a spec, a command string, or a dict of TaskSpec's fields."""
    if isinstance(item, TaskSpec):
        return item
    if isinstance(item, str):
        return TaskSpec(item)
    if isinstance(item, Mapping):
        values = dict(item)
        for key in ("after", "after_index"):
            if key in values:
                values[key] = tuple(values[key])
        try:
            return TaskSpec(**values)
        except TypeError as err:
            raise ValueError(f"not a task spec: {err}") from None
    raise TypeError(f"a task spec is a TaskSpec, a command string or a dict, not {type(item).__name__}")


def batches(specs: Sequence[TaskSpec], per_task: int = 0) -> Iterator[tuple[int, list[TaskSpec]]]:
    """Split specs into (offset, chunk) pieces small enough for one message each; `per_task` bytes more go into
    each task's message (the caller's directory)."""
    start = 0
    while start < len(specs):
        end, size = start, 0
        while end < len(specs) and end - start < BATCH_TASKS:
            spec = specs[end]
            size += len(spec.command) + len(spec.container) + len(spec.cwd) + per_task + 64
            if size > BATCH_BYTES and end > start:
                break
            end += 1
        yield start, list(specs[start:end])
        start = end


def batch_message(
    offset: int, chunk: Iterable[TaskSpec], earlier_ids: Sequence[int], caller_cwd: str = ""
) -> pb.TaskBatch:
    """The message for one chunk: references to specs of earlier chunks become their ids, the rest are re-based;
    each task's directory is anchored at `caller_cwd`."""
    messages = []
    for position, spec in enumerate(chunk, start=offset):
        message = spec.to_message(caller_cwd)
        for index in spec.after_index:
            if not 0 <= index < position:
                raise ValueError(f"spec {position + 1} may only depend on earlier specs, not on spec {index + 1}")
            if index < offset:
                message.after.append(earlier_ids[index])
            else:
                message.after_batch_index.append(index - offset)
        messages.append(message)
    return pb.TaskBatch(tasks=messages)

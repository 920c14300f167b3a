"""A parameter sweep as one object: submit every combination, wait, see what failed, re-run only that.

with Client() as client:
    sweep = client.sweep("python fit.py --a {a} --b {b}", a=[1, 2, 3], b=["x", "y"], name="fit")
    results = sweep.wait()
    for params, result in sweep.failures():
        print(params, result.exit_code, result.reason)
    sweep.rerun_failed()
"""

from __future__ import annotations

import itertools
import os
import shlex
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .specs import TaskSpec
from .status import Status

if TYPE_CHECKING:
    from .client import Client, TaskResult


def combinations(params: Iterable[Mapping[str, Any]] | None, axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """An explicit list of parameter dicts, or the cartesian product of the axes (the last varying fastest)."""
    if params is not None and axes:
        raise ValueError("give either a list of parameter dicts or axes as keywords, not both")
    if params is not None:
        return [dict(p) for p in params]
    names = list(axes)
    for name, values in axes.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(f"axis {name} must be a list of values, not {type(values).__name__}")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(list(axes[n]) for n in names))]


def render(template: str, params: Mapping[str, Any]) -> str:
    """The command for one combination: `{name}` fields replaced by the value, shell-quoted (`{{` is a brace)."""
    fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    missing = sorted(fields - params.keys())
    if missing:
        raise ValueError(f"the template uses {', '.join('{' + m + '}' for m in missing)}, which no parameter gives")
    return template.format_map({key: shlex.quote(str(value)) for key, value in params.items()})


@dataclass
class Sweep:
    """The tasks of one sweep, in the order of their parameters."""

    client: Client
    template: str
    params: list[dict[str, Any]]
    ids: list[int]
    name: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], int]]:
        return iter(zip(self.params, self.ids, strict=True))

    def wait(self, timeout: float | None = None, progress: bool = True) -> list[TaskResult]:
        """Block until every task is finished; their results, in parameter order."""
        return self.client.wait(self.ids, timeout=timeout, progress=progress)

    def results(self) -> list[TaskResult]:
        return self.client.status(self.ids)

    def failures(self) -> list[tuple[dict[str, Any], TaskResult]]:
        """The failed or cancelled tasks with their parameters."""
        bad = (Status.FAILED, Status.CANCELLED)
        return [(p, r) for p, r in zip(self.params, self.results(), strict=True) if r.status in bad]

    def rerun_failed(self) -> list[int]:
        """Run the failed and cancelled tasks again (same ids, a new attempt each); return their ids."""
        failed = [r.task_id for _, r in self.failures()]
        return self.client.retry(failed) if failed else []

    def stdout(self, task_id: int) -> bytes:
        """One task's standard output, as stored."""
        return b"".join(chunk.data for chunk in self.client.logs(task_id) if chunk.stream == "O")


def submit_sweep(
    client: Client,
    template: str,
    params: Iterable[Mapping[str, Any]] | None = None,
    *,
    name: str = "",
    container: str = "",
    retry: int = 0,
    slots: int = 1,
    cwd: str | os.PathLike[str] = "",
    axes: Mapping[str, Sequence[Any]],
) -> Sweep:
    combos = combinations(params, axes)
    if not combos:
        raise ValueError("the sweep has no combination of parameters")
    where = os.fspath(cwd)
    specs = [
        TaskSpec(render(template, p), container, name, retry, (), (), slots, str(i), cwd=where)
        for i, p in enumerate(combos)
    ]
    return Sweep(client, template, combos, client.submit_many(specs), name)

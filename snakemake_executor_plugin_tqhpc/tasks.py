"""How a Snakemake job's resources become a tqhpc task's, and how a failed task is told in Snakemake's log.

Kept apart from the executor and free of Snakemake's objects, so the mapping reads (and is tested) on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024
MB = 1000 * 1000
STDERR_TAIL_LINES = 40
STDERR_TAIL_CHARS = 4000


@dataclass(frozen=True)
class TaskResources:
    """What a job asks of tqhpc: slots (its threads), a memory limit in bytes, the seconds it expects to run, and a
    timeout (0: none)."""

    slots: int
    memory_limit: int
    time_request: float
    timeout: float


def task_resources(threads: int, resources: Mapping[str, object], *, timeout_from_runtime: bool) -> TaskResources:
    """The task's share of a worker from the job's `threads`, `mem_mib` / `mem_mb` and `runtime` (minutes).

    `mem_mb` counts megabytes, as Snakemake documents it, and Snakemake derives `mem_mib` from it (or both from
    `mem`), rounding: the limit is the larger of the two, so a job is never held to less than it asked for.
    Values that are not plain numbers (a resource Snakemake could not evaluate) count as not given.
    """
    mib = _number(resources.get("mem_mib"))
    mb = _number(resources.get("mem_mb"))
    memory = int(max(mib * MIB, mb * MB))
    runtime_minutes = _number(resources.get("runtime"))
    seconds = runtime_minutes * 60.0
    return TaskResources(
        slots=max(1, int(threads)),
        memory_limit=memory,
        time_request=seconds,
        timeout=seconds if timeout_from_runtime else 0.0,
    )


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return 0.0
    return float(value)


def task_name(prefix: str, job_name: str) -> str:
    """The rule's name (a group job's: the group's and its rules', `GROUP_RULE1_RULE2`), after the user's prefix."""
    return f"{prefix}{job_name}"


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES, chars: int = STDERR_TAIL_CHARS) -> str:
    """The last `lines` lines of a task's stderr, at most `chars` characters: enough to see why a job failed (the
    job's own Snakemake prints the rule's stderr and then about 25 lines of its own) without flooding Snakemake's
    log with a long traceback's whole output."""
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail if len(tail) <= chars else "…" + tail[-chars:]


def failure_message(task_id: int, status_label: str, exit_code: int | None, failure: str, reason: str,
                    stderr: str) -> str:  # fmt: skip
    """What Snakemake prints about a job whose task did not succeed: the task, how it ended, its stderr's tail and
    where the rest of its output is."""
    how = [f"tqhpc task {task_id} {status_label}"]
    if exit_code is not None:
        how.append(f"exit code {exit_code}")
    if failure and failure != "exit_code":
        how.append(failure)
    if reason and reason not in how:
        how.append(reason)
    head = ", ".join(how)
    tail = stderr_tail(stderr)
    body = f"\nlast lines of its stderr:\n{tail}\n" if tail else "\nit wrote nothing to stderr.\n"
    return f"{head}.{body}(whole output: `tqhpc logs {task_id}`) "

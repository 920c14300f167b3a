"""`tqhpc submit` (one task or a sweep: --array, --each-line, --param), `tqhpc wait`, `tqhpc cancel`,
`tqhpc retry`."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from ..client import Client
from ..expand import (
    Expanded,
    ExpandError,
    from_array,
    from_lines,
    from_params,
    parse_array,
    parse_params,
    read_lines,
)
from ..limits import MAX_DEPENDENCIES, MAX_SWEEP_TASKS, MAX_TASK_ID
from ..plural import plural
from ..specs import TaskSpec
from ..status import Status
from ..waiting import WaitTimeout, summary
from .options import access_option, connect, status_filter
from .units import DurationType, SizeType


def _ids(values: Sequence[str], what: str = "TASK_IDS", limit: int = MAX_SWEEP_TASKS, why: str = "") -> list[int]:
    """Task ids from arguments such as `12`, `3-10` or `4,5`.

    A range that names no id (`5-3`) is a slip, never "no task": taken as nothing, `--after 5-3` would run at once.
    Each range is counted before it is built, so a slip like `1-100000000` is refused at once, naming the limit.
    """
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            first, sep, last = part.strip().partition("-")
            try:
                start = int(first)
                end = int(last) if sep else start
            except ValueError:
                raise click.BadParameter(
                    f"task ids look like 12, 3-10 or 4,5, not {value!r}", param_hint=what
                ) from None
            if start < 1:
                raise click.BadParameter("task ids start at 1", param_hint=what)
            if end < start:
                raise click.BadParameter(
                    f"the range {part.strip()!r} names no task: a range goes up, as in {end}-{start}", param_hint=what
                )
            if end > MAX_TASK_ID:
                raise click.BadParameter(f"task ids are at most {MAX_TASK_ID}, not {end}", param_hint=what)
            if len(ids) + end - start + 1 > limit:
                raise click.BadParameter(
                    f"{len(ids) + end - start + 1} task ids, more than {limit}{why or ', the most one sweep makes'}",
                    param_hint=what,
                )
            ids.extend(range(start, end + 1))
    return ids


def _id_ranges(ids: Sequence[int]) -> str:
    """`3-14,20` for ids 3..14 and 20: how to name a batch again in a command."""
    parts: list[str] = []
    ordered = sorted(set(ids))
    start = previous = ordered[0]
    for task_id in [*ordered[1:], None]:
        if task_id is not None and task_id == previous + 1:
            previous = task_id
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if task_id is not None:
            start = previous = task_id
    return ",".join(parts)


def _expand(words: Sequence[str], array: str | None, each_line: str | None, params: Sequence[str]) -> list[Expanded]:
    chosen = [flag for flag, used in (("--array", array), ("--each-line", each_line), ("--param", params)) if used]
    if len(chosen) > 1:
        raise click.UsageError(f"use one of --array, --each-line and --param, not {' and '.join(chosen)}")
    try:
        if array is not None:
            return from_array(words, parse_array(array))
        if each_line is not None:
            try:
                text = sys.stdin.read() if each_line == "-" else Path(each_line).read_text()
            except OSError as err:
                raise click.BadParameter(f"cannot read {each_line}: {err.strerror}", param_hint="--each-line") from None
            lines = read_lines(text)
            if not lines:
                raise click.BadParameter(f"{each_line} has no non-empty line", param_hint="--each-line")
            return from_lines(words, lines)
        if params:
            return from_params(words, parse_params(params))
    except ExpandError as err:
        raise click.UsageError(str(err)) from None
    return []


def _wait(client: Client, ids: list[int], timeout: float | None, name: str = "") -> None:
    """Wait with a bar on a terminal; exit 1 unless every task succeeded, 130 on Ctrl-C (the tasks go on)."""
    try:
        results = client.wait(ids, timeout=timeout)
    except WaitTimeout as err:
        click.echo(f"tqhpc: timed out: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _stopped_waiting(ids, name)
    letters = "".join(r.status.value for r in results)
    click.echo(summary(letters))
    if any(r.status != Status.SUCCEEDED for r in results):
        failed = [str(r.task_id) for r in results if r.status != Status.SUCCEEDED]
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        click.echo(f"not succeeded: {' '.join(failed[:10])}{more} (see `tqhpc tasks --status FX`)", err=True)
        sys.exit(1)


@click.command(context_settings={"allow_interspersed_args": False})
@access_option
@click.option("--container", default="", help="Run the command in this Apptainer image (path or URI).")
@click.option("--array", default=None, metavar="RANGE", help="One task per id: 1-1000, 0-99:10, 3,7,9. {} is the id.")
@click.option(
    "--each-line",
    default=None,
    metavar="FILE",
    help="One task per non-empty line of FILE (- for stdin); {} is the line.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=V1,V2",
    help="A sweep over every combination; {NAME} is the value. Repeat.",
)
@click.option("--name", default="", help="A name for the task or sweep, to filter with `tasks --name`, `wait --name`.")
@click.option("--retry", default=0, type=click.IntRange(0, 1000), help="Re-run a failed attempt up to N times.")
@click.option(
    "--after", "after", multiple=True, metavar="IDS", help="Wait until these tasks succeed (12, 3-10, 4,5). Repeat."
)
@click.option(
    "--slots", default=1, type=click.IntRange(1, 4096), help="How much of a worker's concurrency each task takes."
)
@click.option("--timeout", type=DurationType(), default=0.0, help="Kill a task after this long: 90, 30s, 10m, 1h30m.")
@click.option("--memory", type=SizeType(), default=0, help="Kill a task when its processes use more RSS: 512M, 2G.")
@click.option(
    "--time-request",
    type=DurationType(),
    default=0.0,
    help="How long a task may run (90, 10m, 2h); a Slurm worker with less walltime left does not take it.",
)
@click.option(
    "--cwd",
    default="",
    metavar="DIR",
    help="Run the tasks in DIR (relative to the current directory) instead of the current directory.",
)
@click.option("--wait", "wait", is_flag=True, help="Wait for the tasks, with a progress bar on a terminal.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def submit(
    access: str | None,
    container: str,
    array: str | None,
    each_line: str | None,
    params: tuple[str, ...],
    name: str,
    retry: int,
    after: tuple[str, ...],
    slots: int,
    timeout: float,
    memory: int,
    time_request: float,
    cwd: str,
    wait: bool,
    command: tuple[str, ...],
) -> None:
    """Queue COMMAND (or a sweep of it) and print the task ids.

    Options are tqhpc's only before the command's first word: everything from there on belongs to the command, as
    with srun and sbatch. `--` may end tqhpc's options too.

    One argument is a shell command line (`tqhpc submit 'echo a | wc -c'`); several are a program and its arguments,
    quoted for the shell. In a sweep, `{}` or `{NAME}` in the command is replaced by each value (shell-quoted), and
    each task finds its array id in $TQHPC_ARRAY_ID:

    \b
      tqhpc submit --timeout 1h python train.py --timeout 100   # train.py gets --timeout 100
      tqhpc submit --array 1-1000 python sim.py --seed {}
      tqhpc submit --param a=1,2,3 --param b=x,y 'python fit.py {a} {b}'

    A sweep of any size is sent in one call (batches of 10,000).

    Tasks run in the current directory, or in --cwd DIR; it must exist on the workers' nodes.
    """
    depends = tuple(_ids(after, "--after", MAX_DEPENDENCIES, ", the most one task may wait for"))
    expanded = _expand(command, array, each_line, params)
    with connect(access) as client:
        if not expanded:
            line = command[0] if len(command) == 1 else shlex.join(command)
            ids = [
                client.submit(
                    line,
                    container,
                    name=name,
                    retry=retry,
                    after=depends,
                    slots=slots,
                    timeout=timeout,
                    memory_limit=memory,
                    time_request=time_request,
                    cwd=cwd,
                )
            ]
            click.echo(ids[0])
        else:
            specs = [
                TaskSpec(
                    e.command,
                    container,
                    name,
                    retry,
                    depends,
                    (),
                    slots,
                    e.array_id,
                    timeout,
                    memory,
                    time_request,
                    cwd,
                )
                for e in expanded
            ]
            ids = client.submit_many(specs)
            click.echo(f"submitted {plural(len(ids), 'task')}: {_id_ranges(ids)}")
        if wait:
            _wait(client, ids, None)


def _selection(ids: Sequence[str], name: str, status: str, hint: str = "--status") -> tuple[list[int], str, str]:
    letters = status_filter(status)
    task_ids = _ids(ids)
    if not task_ids and not name and not letters:
        raise click.UsageError(f"name the tasks: TASK_IDS, --name or {hint}")
    return task_ids, name, letters


@click.command("wait")
@access_option
@click.argument("task_ids", nargs=-1)
@click.option("--name", default="", help="Every task with this name.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Give up after this many seconds (exit 2).")
def wait_command(access: str | None, task_ids: tuple[str, ...], name: str, timeout: float | None) -> None:
    """Wait until the tasks are finished; exit 0 if they all succeeded, 1 if not."""
    ids = _ids(task_ids)
    if not ids and not name:
        raise click.UsageError("name the tasks: TASK_IDS or --name")
    with connect(access) as client:
        if name:
            ids = sorted(set(ids) | {t.task_id for t in client.tasks(name=name)})
            if not ids:
                raise click.UsageError(f"no task is named {name!r}")
        _wait(client, ids, timeout, name if not task_ids else "")


@click.command()
@access_option
@click.argument("task_ids", nargs=-1)
@click.option("--name", default="", help="Every task with this name.")
@click.option("--status", default="", help="Only tasks with these statuses: letters or names, e.g. P, WP, running.")
def cancel(access: str | None, task_ids: tuple[str, ...], name: str, status: str) -> None:
    """Cancel tasks: waiting and pending ones at once, running ones are killed on their worker."""
    ids, name, status = _selection(task_ids, name, status)
    with connect(access) as client:
        done = client.cancel(ids, name=name, status=status)
    click.echo(f"cancelled {plural(len(done), 'task')}")


@click.command()
@access_option
@click.argument("task_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Only failed tasks (F), not cancelled ones (X).")
@click.option("--name", default="", help="Every task with this name.")
def retry(access: str | None, task_ids: tuple[str, ...], failed: bool, name: str) -> None:
    """Run failed (and cancelled) tasks again, as a new attempt; the earlier attempt's logs are kept."""
    ids, name, status = _selection(task_ids, name, "F" if failed else "", hint="--failed")
    if not ids and not failed:
        status = "FX"
    with connect(access) as client:
        done = client.retry(ids, name=name, status=status)
    click.echo(f"{plural(len(done), 'task')} back in the queue")


@click.command()
@access_option
@click.option("--older-than", required=True, type=DurationType(), help="Only tasks that ended this long ago: 30d, 12h.")
@click.option("--name", default="", help="Only tasks with this name.")
@click.option("--status", default="SFX", show_default=True, help="Which ended tasks: letters of S, F and X.")
def prune(access: str | None, older_than: float, name: str, status: str) -> None:
    """Remove ended tasks and their output for good; a task that unfinished tasks depend on is kept."""
    letters = status.upper()
    if not letters or not set(letters) <= set("SFX"):
        raise click.UsageError(f"--status: only ended tasks are pruned, so letters of S, F and X, not {status!r}")
    with connect(access) as client:
        removed = client.prune(older_than, name=name, status=letters)
    click.echo(f"removed {plural(len(removed), 'task')}")


def _stopped_waiting(ids: Sequence[int], name: str) -> NoReturn:
    """Ctrl-C stops this command only: say so, lest the user think the tasks were stopped or lost."""
    which = f"--name {shlex.quote(name)}" if name else _id_ranges(ids)
    tasks = "the task goes on: it stays" if len(ids) == 1 else f"the {len(ids)} tasks go on: they stay"
    click.echo(
        f"tqhpc: stopped waiting, but {tasks} queued or running on the server. `tqhpc wait {which}` waits again, "
        f"`tqhpc tasks` shows them, `tqhpc cancel {which}` stops them.",
        err=True,
    )
    sys.exit(130)


COMMANDS = [submit, wait_command, cancel, retry, prune]

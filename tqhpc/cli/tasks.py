"""`tqhpc tasks`, `tqhpc task`, `tqhpc logs`: what became of tasks."""

from __future__ import annotations

import json
import sys

import click

from ..records import TaskInfo
from ..status import Status
from . import output
from .options import access_option, complete_status, connect, json_option, status_filter


@click.command("tasks")
@access_option
@click.option(
    "--status",
    "status",
    default=None,
    help="Only these statuses: letters (W P A C R S F X, e.g. F or SF) or names (running, failed,pending).",
    shell_complete=complete_status,
)
@click.option("--name", default="", help="Only tasks with this name (`submit --name`).")
@json_option
def list_tasks(access: str | None, status: str | None, name: str, as_json: bool) -> None:
    """List tasks with their status, exit code, worker and wall time, printed as the server sends them."""
    if status is not None:
        status = status_filter(status)
    with connect(access) as client:
        pages = client.task_pages(status, name=name)
        if as_json:
            output.print_json_pages(pages, sys.stdout)
        else:
            output.print_task_pages(output.console(), pages)


@click.command("task")
@access_option
@click.argument("words", nargs=-1, required=True, metavar="[show] TASK_ID")
@json_option
def show_task(access: str | None, words: tuple[str, ...], as_json: bool) -> None:
    """Show one task's whole record, with what each attempt cost (`tqhpc task 7` or `tqhpc task show 7`)."""
    if words and words[0] == "show":
        words = words[1:]
    if len(words) != 1 or not words[0].isdigit() or int(words[0]) < 1:
        raise click.BadParameter(f"expected one task id (a positive integer), got {' '.join(words)!r}")
    with connect(access) as client:
        task = client.task(int(words[0]))
    record = task.to_dict()
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    output.print_task_record(record)


@click.command()
@access_option
@click.argument("task_id", type=click.IntRange(min=1))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the task ends.")
def logs(access: str | None, task_id: int, follow: bool) -> None:
    """Print a task's stdout (to stdout) and stderr (to stderr), byte for byte."""
    with connect(access) as client:
        client.write_logs(task_id, follow=follow)
        if not follow:
            # Read after the output: a task still not started then had none to print, and silence would look like
            # a task that ran and printed nothing.
            note = _no_output_yet(client.task(task_id))
            if note:
                click.echo(f"tqhpc: {note}", err=True)


NOT_STARTED = frozenset({Status.WAITING, Status.PENDING, Status.ASSIGNED, Status.ACCEPTED})


def _no_output_yet(task: TaskInfo) -> str:
    """Why a task has no output to show, when the reason is that it has not run (yet)."""
    if task.status in NOT_STARTED:
        return (
            f"task {task.task_id} has not started ({task.status.value} {task.status.label}), so it has no output yet;"
            f" `tqhpc logs --follow {task.task_id}` waits for it and prints its output as it runs"
        )
    if task.status == Status.CANCELLED and task.attempts == 0:
        return f"task {task.task_id} was cancelled before it started: it has no output"
    return ""


COMMANDS = [list_tasks, show_task, logs]  # `submit` lives in sweeps.py

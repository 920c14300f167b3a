"""`tqhpc submit`, `tqhpc tasks`, `tqhpc task`, `tqhpc logs`."""

from __future__ import annotations

import json
import sys

import click

from ..status import TransitionError, parse_status_filter
from . import output
from .options import access_option, connect, json_option


@click.command("tasks")
@access_option
@click.option("--status", "status", default=None, help="Only these status letters, e.g. F or SF (W P A C R S F X).")
@click.option("--name", default="", help="Only tasks with this name (issue 5: `submit --name`).")
@json_option
def list_tasks(access: str | None, status: str | None, name: str, as_json: bool) -> None:
    """List tasks with their status, exit code, worker and wall time, printed as the server sends them."""
    if status is not None:
        try:
            parse_status_filter(status)
        except TransitionError as err:
            raise click.BadParameter(str(err), param_hint="--status") from None
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


COMMANDS = [list_tasks, show_task, logs]  # `submit` lives in sweeps.py (issue 5)

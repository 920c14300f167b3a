"""`tqhpc submit`, `tqhpc tasks`, `tqhpc task`, `tqhpc logs`."""

from __future__ import annotations

import json

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
    """List tasks with their status, exit code, worker and wall time."""
    if status is not None:
        try:
            parse_status_filter(status)
        except TransitionError as err:
            raise click.BadParameter(str(err), param_hint="--status") from None
    with connect(access) as client:
        tasks = client.tasks(status, name=name)
    if as_json:
        output.print_json(tasks)
        return
    console = output.console()
    console.print(output.tasks_table(tasks, console.width))
    console.print(f"[dim]{len(tasks)} tasks: {output.status_counts(tasks) or 'none'}[/]")


@click.command("task")
@access_option
@click.argument("task_id", type=click.IntRange(min=1))
@json_option
def show_task(access: str | None, task_id: int, as_json: bool) -> None:
    """Show one task's whole record."""
    with connect(access) as client:
        task = client.task(task_id)
    record = task.to_dict()
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    width = max(map(len, record))
    for key, value in record.items():
        click.echo(f"{key:<{width}}  {'' if value is None else value}")


@click.command()
@access_option
@click.argument("task_id", type=click.IntRange(min=1))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the task ends.")
def logs(access: str | None, task_id: int, follow: bool) -> None:
    """Print a task's stdout (to stdout) and stderr (to stderr), byte for byte."""
    with connect(access) as client:
        client.write_logs(task_id, follow=follow)


COMMANDS = [list_tasks, show_task, logs]  # `submit` lives in sweeps.py (issue 5)

"""`tqhpc submit`, `tqhpc tasks`, `tqhpc task`, `tqhpc logs`."""

from __future__ import annotations

import json
import shlex

import click

from ..status import TransitionError, parse_status_filter
from . import output
from .options import access_option, connect, json_option


@click.command(context_settings={"ignore_unknown_options": True})
@access_option
@click.option("--container", default="", help="Run the command in this Apptainer image (path or URI).")
@click.option(
    "--time-request",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds the task may run; a Slurm worker with less walltime left does not take it (0: not declared).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def submit(access: str | None, container: str, time_request: float, command: tuple[str, ...]) -> None:
    """Queue COMMAND and print its task id.

    One argument is taken as a shell command line (`tqhpc submit 'echo a | wc -c'`); several are taken as a
    program and its arguments and quoted for the shell (`tqhpc submit -- python sim.py --seed 3`).
    """
    line = command[0] if len(command) == 1 else shlex.join(command)
    with connect(access) as client:
        click.echo(client.submit(line, container, time_request=time_request))


@click.command("tasks")
@access_option
@click.option("--status", "status", default=None, help="Only these status letters, e.g. F or SF (W P A C R S F X).")
@json_option
def list_tasks(access: str | None, status: str | None, as_json: bool) -> None:
    """List tasks with their status, exit code, worker and wall time."""
    if status is not None:
        try:
            parse_status_filter(status)
        except TransitionError as err:
            raise click.BadParameter(str(err), param_hint="--status") from None
    with connect(access) as client:
        tasks = client.tasks(status)
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


COMMANDS = [submit, list_tasks, show_task, logs]

"""The `tqhpc` command: one click group, one module per family of verbs, every error as one line."""

from __future__ import annotations

import sys

import click

from ..access import AccessError
from ..client import ClientError
from ..config import ConfigError
from . import pools, processes, stats, sweeps, tasks, top, workers


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tqhpc")
def cli() -> None:
    """tqhpc: run many commands on an HPC cluster through one queue.

    Start `tqhpc server` on the login node, start workers (`tqhpc worker` in a batch job, or
    `tqhpc workers create`), then `tqhpc submit` commands and read them with `tqhpc tasks` and `tqhpc logs`.
    """


for module in (processes, sweeps, tasks, workers, pools, stats, top):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    try:
        cli.main(prog_name="tqhpc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("tqhpc: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx else "tqhpc"
        click.echo(f"{where}: error: {err.format_message()} (see `{where} --help`)", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo(f"tqhpc: error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except (ClientError, AccessError, ConfigError) as err:
        click.echo(f"tqhpc: error: {err}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("tqhpc: interrupted", err=True)
        sys.exit(130)

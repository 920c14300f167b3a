"""`tqhpc server` and `tqhpc worker`: the two long-running processes."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..access import default_state_dir, find_access_file, read_access
from ..config import (
    ApptainerSettings,
    ServerSettings,
    WorkerSettings,
    config_path,
    pop_settings,
    settings_options,
)


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Database, lock, access.toml and logs (default: $TQHPC_HOME, else ~/.local/share/tqhpc).",
)
@click.option("--listen", default=None, help="HOST:PORT to listen on (default: all interfaces, a free port).")
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve plaintext, without TLS: calls and their token cross the network unencrypted. For clients that "
    "cannot pin the certificate (scitq's own); access.toml then says tls = false.",
)
@settings_options(ServerSettings)
def server(state_dir: Path | None, listen: str | None, insecure: bool, **options: Any) -> None:
    """Run the queue server in the foreground until SIGTERM or Ctrl-C.

    It serves TLS with a self-signed certificate made at first start in the state directory and pinned through
    access.toml; plaintext only with --insecure. Each setting comes from its flag, else its TQHPC_* variable, else
    the state directory's config.toml ($TQHPC_CONFIG names another file), else its default.
    """
    from ..server.app import ServerStartError, serve
    from ..server.statelock import StateDirBusy
    from ..store.schema import SchemaError

    state_dir = state_dir or default_state_dir()
    config = config_path(state_dir)
    settings = pop_settings(ServerSettings, options, config)
    try:
        asyncio.run(serve(state_dir, listen, settings, config=config, insecure=insecure))
    except (StateDirBusy, ServerStartError) as err:
        raise click.ClickException(str(err)) from None
    except SchemaError as err:  # a database written by a newer tqhpc: never write into a schema it does not know
        raise click.ClickException(f"cannot use the state directory {state_dir}: {err}") from None


@click.group(invoke_without_command=True)
@click.option("--access", type=click.Path(), default=None, help="The server's access.toml (or its state directory).")
@click.option("--name", default=None, help="A name shown in `tqhpc workers` (default: host and job id or pid).")
@click.option(
    "--worker-id",
    type=click.IntRange(min=1),
    default=None,
    envvar="TQHPC_WORKER_ID",
    help="Take up a worker id reserved by CreateWorker (the server sets it for the workers it starts).",
)
@settings_options(WorkerSettings)
@settings_options(ApptainerSettings)
@click.pass_context
def worker(ctx: click.Context, access: str | None, name: str | None, worker_id: int | None, **options: Any) -> None:
    """Run a worker in the foreground: the one command a batch script needs.

    Each setting comes from its flag, else its TQHPC_* variable, else the config.toml beside the access file (the
    server's state directory; $TQHPC_CONFIG names another file), else its default. `tqhpc worker delete ID` stops a
    worker instead (a Slurm worker's job is cancelled).
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = access
        return
    from ..worker.agent import Worker

    access_file = find_access_file(access)
    # config.toml sits beside access.toml in the server's state directory: one file configures server and workers.
    config = config_path(access_file.parent)
    settings = pop_settings(WorkerSettings, options, config)
    apptainer = pop_settings(ApptainerSettings, options, config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Worker(
        read_access(access_file), settings, access_file=access_file, name=name, worker_id=worker_id, apptainer=apptainer
    )
    sys.exit(asyncio.run(agent.run()))


@worker.command("delete")
@click.option("--access", type=click.Path(), default=None, help="The server's access.toml (or its state directory).")
@click.argument("worker_ids", nargs=-1, required=True, type=click.IntRange(min=1))
@click.pass_context
def delete_worker(ctx: click.Context, access: str | None, worker_ids: tuple[int, ...]) -> None:
    """Stop workers (scancel for Slurm ones); their unfinished tasks go back to the queue."""
    from ..client import Client

    with Client(access or ctx.obj) as client:
        for worker_id in worker_ids:
            client.delete_worker(worker_id)
            click.echo(f"worker {worker_id} deleted")


COMMANDS = [server, worker]

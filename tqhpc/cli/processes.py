"""`tqhpc server` and `tqhpc worker`: the two long-running processes."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from ..access import default_state_dir, find_access_file, read_access
from ..config import ServerSettings, WorkerSettings, load_settings


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Database, lock, access.toml and logs (default: $TQHPC_HOME, else ~/.local/share/tqhpc).",
)
@click.option("--listen", default=None, help="HOST:PORT to listen on (default: all interfaces, a free port).")
@click.option("--worker-timeout", type=float, default=None, help="Seconds without a ping before a worker is lost.")
@click.option("--reap-interval", type=float, default=None, help="Seconds between looks for lost workers.")
def server(
    state_dir: Path | None, listen: str | None, worker_timeout: float | None, reap_interval: float | None
) -> None:
    """Run the queue server in the foreground until SIGTERM or Ctrl-C."""
    from ..server.app import ServerStartError, serve
    from ..server.statelock import StateDirBusy

    settings = load_settings(ServerSettings, {"worker_timeout": worker_timeout, "reap_interval": reap_interval})
    try:
        asyncio.run(serve(state_dir or default_state_dir(), listen, settings))
    except (StateDirBusy, ServerStartError) as err:
        raise click.ClickException(str(err)) from None


@click.command()
@click.option("--access", type=click.Path(), default=None, help="The server's access.toml (or its state directory).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Tasks run at once.")
@click.option("--prefetch", type=click.IntRange(min=0), default=None, help="Tasks accepted beyond --concurrency.")
@click.option("--name", default=None, help="A name shown in `tqhpc workers` (default: host and job id or pid).")
@click.option(
    "--worker-id",
    type=click.IntRange(min=1),
    default=None,
    envvar="TQHPC_WORKER_ID",
    help="Take up a worker id reserved by CreateWorker (the server sets it for the workers it starts).",
)
@click.option("--ping-interval", type=float, default=None, help="Seconds between heartbeats while idle.")
@click.option("--grace-period", type=float, default=None, help="On SIGTERM, seconds running tasks may go on.")
@click.option("--scratch-dir", default=None, help="Where per-task working directories go (default: $TMPDIR).")
def worker(
    access: str | None,
    concurrency: int | None,
    prefetch: int | None,
    name: str | None,
    worker_id: int | None,
    ping_interval: float | None,
    grace_period: float | None,
    scratch_dir: str | None,
) -> None:
    """Run a worker in the foreground: the one command a batch script needs."""
    from ..worker.agent import Worker

    settings = load_settings(
        WorkerSettings,
        {
            "concurrency": concurrency,
            "prefetch": prefetch,
            "ping_interval": ping_interval,
            "grace_period": grace_period,
            "scratch_dir": scratch_dir,
        },
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access_file = find_access_file(access)
    agent = Worker(read_access(access_file), settings, access_file=access_file, name=name, worker_id=worker_id)
    sys.exit(asyncio.run(agent.run()))


COMMANDS = [server, worker]

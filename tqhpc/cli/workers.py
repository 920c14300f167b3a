"""`tqhpc workers`: list, create, change and delete workers."""

from __future__ import annotations

import click

from ..client import Client
from . import output
from .options import access_option, connect, json_option


@click.group(invoke_without_command=True)
@access_option
@click.option("--all", "show_all", is_flag=True, help="Also workers that are gone (lost, deleted, stopped).")
@json_option
@click.pass_context
def workers(ctx: click.Context, access: str | None, show_all: bool, as_json: bool) -> None:
    """List workers; the subcommands create, change and delete them."""
    ctx.obj = access
    if ctx.invoked_subcommand is not None:
        return
    with connect(access) as client:
        found = client.workers(include_retired=show_all)
    if as_json:
        output.print_json(found)
    else:
        console = output.console()
        output.show(console, output.workers_table(found, console.width))


def _client(ctx: click.Context, access: str | None) -> Client:
    return connect(access or ctx.obj)


@workers.command("create")
@access_option
@click.option("--number", "-n", type=click.IntRange(min=1), default=1, help="How many workers.")
@click.option(
    "--provider", default="local", help="Where they run: local (on the server's host) or slurm (one job each)."
)
@click.option(
    "--profile",
    "-p",
    default=None,
    metavar="NAME",
    help="Slurm pool profile ([pools.NAME] of the server's config.toml); default: the cluster's default partition.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=0),
    default=0,
    help="Tasks each runs at once (0: its CPUs; for Slurm, the profile's).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=None,
    help="Tasks each accepts beyond its concurrency (default: the pool profile's for Slurm, else 1).",
)
@click.pass_context
def create(
    ctx: click.Context,
    access: str | None,
    number: int,
    provider: str,
    profile: str | None,
    concurrency: int,
    prefetch: int | None,
) -> None:
    """Start workers through the server and print their ids."""
    if profile is not None and provider != "slurm":
        raise click.UsageError("--profile names a Slurm pool profile: use it with --provider slurm")
    if prefetch is None and provider != "slurm":
        prefetch = 1
    with _client(ctx, access) as client:
        ids = client.create_workers(
            number, provider=provider, concurrency=concurrency, prefetch=prefetch, flavor=profile or ""
        )
    click.echo(" ".join(map(str, ids)))


@workers.command("set")
@access_option
@click.argument("worker_id", type=click.IntRange(min=1))
@click.option("--concurrency", type=click.IntRange(min=1), default=None)
@click.option("--prefetch", type=click.IntRange(min=0), default=None)
@click.pass_context
def set_worker(
    ctx: click.Context, access: str | None, worker_id: int, concurrency: int | None, prefetch: int | None
) -> None:
    """Change a running worker's concurrency or prefetch; it follows at its next ping."""
    if concurrency is None and prefetch is None:
        raise click.UsageError("give --concurrency, --prefetch or both")
    with _client(ctx, access) as client:
        w = client.update_worker(worker_id, concurrency=concurrency, prefetch=prefetch)
    click.echo(f"worker {w.worker_id}: concurrency {w.concurrency}, prefetch {w.prefetch}")


@workers.command("delete")
@access_option
@click.argument("worker_ids", nargs=-1, required=True, type=click.IntRange(min=1))
@click.pass_context
def delete(ctx: click.Context, access: str | None, worker_ids: tuple[int, ...]) -> None:
    """Stop workers; their unfinished tasks go back to the queue."""
    with _client(ctx, access) as client:
        for worker_id in worker_ids:
            client.delete_worker(worker_id)
            click.echo(f"worker {worker_id} deleted")


COMMANDS = [workers]

"""`tqhpc pool create`, `list` and `resume`: Slurm worker jobs from the server's pool profiles."""

from __future__ import annotations

import json

import click
from google.protobuf.json_format import MessageToDict
from rich.markup import escape
from rich.table import Table

from ..plural import plural
from . import output
from .options import access_option, connect, json_option


@click.group("pool")
def pool() -> None:
    """Slurm worker pools: the [pools.NAME] profiles of the server's config.toml."""


@pool.command("create")
@access_option
@click.option("--profile", "-p", required=True, help="The pool profile ([pools.NAME] in the server's config.toml).")
@click.option("--number", "-n", type=click.IntRange(min=1), default=1, help="How many worker jobs to submit.")
@click.option(
    "--concurrency", type=click.IntRange(min=0), default=0, help="Tasks each runs at once (0: the profile's)."
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=None,
    help="Tasks each accepts beyond its concurrency (default: the profile's).",
)
def create(access: str | None, profile: str, number: int, concurrency: int, prefetch: int | None) -> None:
    """Submit NUMBER Slurm jobs of PROFILE, one worker each, and print their worker ids."""
    with connect(access) as client:
        ids = client.create_workers(
            number, provider="slurm", flavor=profile, concurrency=concurrency, prefetch=prefetch
        )
    click.echo(" ".join(map(str, ids)))


@pool.command("resume")
@access_option
@click.argument("name")
def resume(access: str | None, name: str) -> None:
    """Let automatic allocation submit for pool NAME again after it paused on failed submissions."""
    with connect(access) as client:
        state = client.resume_slurm_pool(name)
    click.echo(f"pool {state.name}: automatic allocation {'on' if state.autoalloc else 'off'}, not paused")


@pool.command("list")
@access_option
@json_option
def list_pools(access: str | None, as_json: bool) -> None:
    """Show every pool profile, its live and queued workers, and whether automatic allocation is paused and why."""
    with connect(access) as client:
        pools = client.slurm_pools()
    if as_json:
        click.echo(
            json.dumps(
                [
                    MessageToDict(p, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
                    for p in pools
                ],
                indent=2,
            )
        )
        return
    if not pools:
        click.echo(
            "no pools yet: `tqhpc workers create --provider slurm` uses the default profile (the cluster's default "
            "partition); add [pools.NAME] tables to the server's config.toml for others"
        )
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("POOL", "AUTOALLOC", "LIVE", "QUEUED", "BACKLOG", "MAX", "IDLE TIMEOUT", "TIME LIMIT", "SUBMITTED"):
        table.add_column(header, no_wrap=True)
    table.add_column("STATUS")
    for p in pools:
        if p.paused:
            status = f"[bold red]paused[/]: {escape(p.pause_reason)}"
        elif p.failures:
            status = f"[yellow]{plural(p.failures, 'failed submission')} in a row[/]"
        else:
            status = "ok"
        table.add_row(
            escape(p.name),
            "on" if p.autoalloc else "off",
            str(p.live),
            str(p.queued),
            str(p.backlog),
            str(p.max_workers),
            f"{p.idle_timeout:g}s",
            p.time_limit or "none",
            str(p.submitted),
            status,
        )
    output.console().print(table)


COMMANDS = [pool]

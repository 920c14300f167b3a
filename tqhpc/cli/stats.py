"""`tqhpc stats`: what the selected tasks cost and what to ask Slurm for next time (`seff` for a whole sweep)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..client import Client, ClientError
from ..plural import plural
from ..stats import Samples, Spread, TaskStats, summarize
from ..status import Status
from . import output
from .options import access_option, connect, json_option, status_filter
from .units import format_size

_POOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@click.command("stats")
@access_option
@click.option("--name", default="", help="Only tasks with this name (`submit --name`).")
@click.option(
    "--status",
    "status",
    default=None,
    help="Only these statuses: letters (S, SF) or names (succeeded,failed). Default: every task.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=4096),
    default=1,
    show_default=True,
    help="Tasks at once per worker job, for the sbatch and pool profile sizes suggested.",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    metavar="FILE.png",
    help="Also draw histograms of wall time and peak RSS and the tasks done over time (needs tqhpc[plot]).",
)
@json_option
def stats(
    access: str | None, name: str, status: str | None, concurrency: int, plot_file: str | None, as_json: bool
) -> None:
    """Wall time, CPU time, CPU efficiency and peak RSS of the tasks (p50, p95, p99, max), their failures by kind,
    and the memory and time to ask for: `tqhpc submit` options, sbatch options and a pool profile to paste.

    Figures come from tasks that ended (S or F) with their worker's final usage report."""
    if status is not None:
        status = status_filter(status)
    if plot_file is not None:
        from ..plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()  # before reading a million tasks, not after
        except PlotUnavailable as err:
            raise click.ClickException(str(err)) from None
    samples = collect(connect(access), status, name)
    summary = summarize(samples, concurrency)
    profile = name if _POOL_NAME.match(name) else "sized"
    if plot_file is not None:
        from ..plot import draw_stats

        try:
            draw_stats(samples, summary, Path(plot_file), title=_title(name, status))
        except OSError as err:
            raise click.ClickException(f"cannot write the plot to {plot_file}: {err.strerror or err}") from None
    if as_json:
        click.echo(json.dumps(summary.to_dict(profile), indent=2))
        return
    print_stats(output.console(), summary, profile)
    if plot_file is not None:
        click.echo(f"plot: {plot_file}")


def collect(client: Client, status: str | None, name: str) -> Samples:
    """The selected tasks' figures, read page by page: from TaskStatsPages, or from the whole listing of a server
    without it."""
    samples = Samples()
    with client:
        try:
            for page in client.task_stats_pages(status, name=name):
                samples.add_columns(page)
        except ClientError as err:
            if err.code != grpc.StatusCode.UNIMPLEMENTED or samples.statuses:
                raise
            for listing in client.page_messages(status, name=name):
                samples.add_tasks(listing.tasks)
    return samples


def _title(name: str, status: str | None) -> str:
    which = f"tasks named {name}" if name else "all tasks"
    return which + (f", status {status}" if status else "")


def print_stats(console: Console, summary: TaskStats, profile: str) -> None:
    counts = ", ".join(f"{n} {Status(letter).label}" for letter, n in summary.statuses.items()) or "none"
    console.print(f"[bold]{plural(summary.count, 'task')}[/]: {counts}; {summary.measured} measured")
    if summary.measured:
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("")
        for header in ("P50", "P95", "P99", "MAX"):
            table.add_column(header, justify="right", no_wrap=True)
        rows: list[tuple[str, Spread | None, str]] = [
            ("wall time", summary.wall_time, "duration"),
            ("CPU time", summary.cpu_time, "duration"),
            ("CPU efficiency", summary.cpu_efficiency, "percent"),
            ("peak RSS", summary.peak_rss, "size"),
        ]
        for label, spread, kind in rows:
            if spread is not None:
                table.add_row(label, *(_cell(v, kind) for v in (spread.p50, spread.p95, spread.p99, spread.max)))
        console.print(table)
    if summary.failures:
        kinds = ", ".join(f"{n} {kind}" for kind, n in summary.failures.items())
        console.print(f"[bold red]failures[/]: {escape(kinds)}")
    for warning in summary.warnings:
        console.print(f"[yellow]note[/]: {escape(warning)}")
    sizing = summary.sizing
    if sizing is None:
        console.print("no task has ended with a usage report yet: nothing to size")
        return
    options = sizing.to_dict(profile)
    console.print(
        f"[bold]sizing[/]: --memory {options['memory']} covers {_percent(sizing.memory_covers)} of these tasks' peak "
        f"RSS; --time-request {options['time_request']} covers {_percent(sizing.time_request_covers)} of their wall "
        "time (p99 + 20 %)"
    )
    console.out(f"  tqhpc submit {sizing.submit_options} ...", highlight=False)
    tasks = plural(sizing.concurrency, "task")
    console.out(f"  sbatch {sizing.sbatch_options}   # one worker job of {tasks} at once", highlight=False)
    console.print("[bold]pool profile[/] (the server's config.toml; `tqhpc stats --concurrency N` for N tasks a job):")
    console.out("  " + sizing.pool_profile(profile).replace("\n", "\n  "), highlight=False)


def _percent(share: float) -> str:
    """100% only when it is all of them: 99.96 % shows as 99.9%, not as a rounded-up 100%."""
    return "100%" if share >= 1 else f"{math.floor(share * 1000) / 10:.1f}%"


def _cell(value: float, kind: str) -> str:
    if kind == "percent":
        return f"{value:.0%}"
    if kind == "size":
        return format_size(int(value)) or "0 B"
    return output.duration(value)


COMMANDS = [stats]

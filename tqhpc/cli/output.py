"""Everything the CLI prints about tasks and workers: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..client import TaskInfo, WorkerInfo
from ..status import Status
from .units import format_size

_STATUS_STYLE = {
    Status.WAITING: "dim",
    Status.PENDING: "yellow",
    Status.ASSIGNED: "cyan",
    Status.ACCEPTED: "cyan",
    Status.RUNNING: "blue",
    Status.SUCCEEDED: "green",
    Status.FAILED: "bold red",
    Status.CANCELLED: "magenta",
}
COMMAND_WIDTH = 60
PIPE_WIDTH = 250


def console() -> Console:
    """A terminal gets tables fitted to its width; a pipe or file gets whole lines."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=PIPE_WIDTH)


def print_json(records: Sequence[TaskInfo] | Sequence[WorkerInfo]) -> None:
    print(json.dumps([r.to_dict() for r in records], indent=2))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _ago(timestamp: float | None) -> str:
    return "" if timestamp is None else f"{_duration(max(0.0, time.time() - timestamp))} ago"


def _short(text: str, width: int = COMMAND_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


RICH_ROWS = 500
"""Above this many rows a table is laid out as plain text: rich measures every cell, which takes seconds for the
ten thousand tasks of a sweep, and colour adds nothing to a listing that long."""


def _table(
    headers: Sequence[str],
    rows: list[list[str]],
    *,
    right: set[str],
    elastic: str,
    width: int,
    styles: Sequence[str] = (),
) -> Table | str:
    """Every column keeps its content whole but the elastic one, cut with an ellipsis to fit the width.

    Cells are plain text (never markup, so a command's brackets print as they are); `styles` colours the second
    column row by row in the rich rendering.
    """
    widths = [max([cell_len(header)] + [cell_len(row[i]) for row in rows]) for i, header in enumerate(headers)]
    fixed = sum(w + 2 for header, w in zip(headers, widths, strict=True) if header != elastic)
    room = max(8, width - fixed)
    if len(rows) > RICH_ROWS:
        return _plain_table(headers, rows, widths, right=right, elastic=elastic, room=room)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in headers:
        if header == elastic:
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=room)
        else:
            table.add_column(header, justify="right" if header in right else "left", no_wrap=True)
    for index, row in enumerate(rows):
        cells = [Text(cell) for cell in row]
        if styles:
            cells[1].stylize(styles[index])
        table.add_row(*cells)
    return table


def _plain_table(
    headers: Sequence[str], rows: list[list[str]], widths: list[int], *, right: set[str], elastic: str, room: int
) -> str:
    widths = [min(w, room) if h == elastic else w for h, w in zip(headers, widths, strict=True)]
    aligned = [(h in right, w, h == elastic) for h, w in zip(headers, widths, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, (to_right, w, cut) in zip(cells, aligned, strict=True):
            shown = cell[: w - 1] + "…" if cut and cell_len(cell) > w else cell
            pad = " " * (w - cell_len(shown))
            out.append(pad + shown if to_right else shown + pad)
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def show(console: Console, grid: Table | str) -> None:
    """Print a table from `_table`, whichever way it was laid out."""
    if isinstance(grid, str):
        console.out(grid, highlight=False)
    else:
        console.print(grid)


def tasks_table(tasks: Sequence[TaskInfo], width: int) -> Table | str:
    headers = ["ID", "STATUS", "EXIT", "WORKER", "WALL", "CPU", "PEAK RSS", "COMMAND"]
    with_container = any(t.container for t in tasks)
    if with_container:
        headers.append("CONTAINER")
    with_name = any(t.name for t in tasks)  # issue 5: names and why a task waits
    with_reason = any(_why(t) for t in tasks)
    headers += ["NAME"] * with_name + ["WHY"] * with_reason
    rows = []
    for t in tasks:
        row = [
            str(t.task_id),
            f"{t.status.value} {t.status.label}",
            "" if t.exit_code is None else str(t.exit_code),
            "" if t.worker_id is None else str(t.worker_id),
            _duration(t.usage.wall_time if t.usage and t.usage.final else t.wall_time),
            _duration(t.usage.cpu_time) if _measured(t) else "",
            format_size(t.usage.peak_rss) if _measured(t) else "",
            _short(t.command),
        ]
        if with_container:
            row.append(t.container)
        if with_name:
            row.append(t.name)
        if with_reason:
            row.append(_why(t))
        rows.append(row)
    right = {"ID", "EXIT", "WORKER", "WALL", "CPU", "PEAK RSS"}
    styles = [_STATUS_STYLE[t.status] for t in tasks]
    return _table(headers, rows, right=right, elastic="COMMAND", width=width, styles=styles)


def _why(task: TaskInfo) -> str:
    """What a glance at the table should tell: why a task waits or was cancelled, and what kind of failure ended it
    (the whole reason is in `tqhpc task ID`)."""
    if task.status == Status.SUCCEEDED:
        return ""
    if task.status == Status.FAILED:
        return task.failure or task.reason
    return task.reason


def _measured(task: TaskInfo) -> bool:
    """Usage figures exist once the task was sampled or ended (the first report says only where it runs)."""
    return task.usage is not None and (task.usage.final or task.usage.samples > 0)


def print_task_record(record: dict[str, Any]) -> None:
    """One task for people: its fields, then its latest usage, then one line per attempt."""
    usage = record.pop("usage", None)
    attempts = record.pop("attempt_usage", [])
    width = max(map(len, [*record, *(f"  {key}" for key in usage or ())]))
    for key, value in record.items():
        print(f"{key:<{width}}  {_field(key, value)}")
    if usage:
        print("usage (latest attempt):")
        for key, value in usage.items():
            print(f"  {key:<{width - 2}}  {_field(key, value)}")
    for usage in attempts:
        print(
            f"attempt {usage['attempt']}: worker {usage['worker_id']} ({usage['worker_name']}) on {usage['hostname']}"
            f"{' job ' + usage['slurm_job_id'] if usage['slurm_job_id'] else ''}, wall {_duration(usage['wall_time'])},"
            f" cpu {_duration(usage['cpu_user'] + usage['cpu_system'])}, peak rss {format_size(usage['peak_rss'])},"
            f" exit {usage['exit_code']}{', ' + usage['failure'] if usage['failure'] else ''}"
            f"{': ' + usage['reason'] if usage.get('reason') else ''}"
        )


def _field(key: str, value: Any) -> str:
    """A record's value as a person reads it: local times, seconds, sizes; --json keeps the raw numbers."""
    if key == "cwd" and not value:
        return "a scratch directory per attempt, removed when it ends"
    if value is None or value == "":
        return ""
    if key.endswith("_at"):
        return _local_time(value) if value else ""
    if key in _SECONDS:
        return "none" if not value and key in _LIMITS else f"{value:.3f}s"
    if key in _SIZES:
        return ("none" if key in _LIMITS else "0 B") if not value else format_size(value)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _local_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"


_SECONDS = {"wall_time", "cpu_user", "cpu_system", "timeout", "time_request"}
_LIMITS = {"timeout", "memory_limit", "time_request"}
_SIZES = {"peak_rss", "last_rss", "read_bytes", "write_bytes", "memory_limit"}


def status_counts(tasks: Sequence[TaskInfo]) -> str:
    counts: dict[Status, int] = {}
    for t in tasks:
        counts[t.status] = counts.get(t.status, 0) + 1
    return ", ".join(f"{n} {s.label}" for s, n in sorted(counts.items(), key=lambda kv: list(Status).index(kv[0])))


def workers_table(workers: Sequence[WorkerInfo], width: int) -> Table | str:
    headers = ["ID", "NAME", "STATE", "HOST", "PROVIDER", "RUNNING", "HELD", "CONC", "PREFETCH", "LOAD", "MEM USED",
               "MEM AVAIL", "CONTAINERS", "LAST PING", "JOB"]  # fmt: skip
    rows = [
        [
            str(w.worker_id),
            w.name,
            w.state,
            w.hostname,
            w.provider or "manual",
            str(w.running),
            str(w.held),
            str(w.concurrency),
            str(w.prefetch),
            f"{w.stats.load1:.2f}" if w.stats else "",
            format_size(w.stats.memory_used) if w.stats else "",
            format_size(w.stats.memory_available) if w.stats else "",
            {True: "yes", False: "no", None: ""}[w.container_capable],
            _ago(w.last_ping),
            _slurm_job(w),
        ]
        for w in workers
    ]
    right = {"ID", "RUNNING", "HELD", "CONC", "PREFETCH", "LOAD", "MEM USED", "MEM AVAIL"}
    return _table(headers, rows, right=right, elastic="NAME", width=width)


def _slurm_job(worker: WorkerInfo) -> str:
    """issue 4: the Slurm job id and its last seen state, for Slurm workers."""
    if not worker.slurm_job_id:
        return ""
    return f"{worker.slurm_job_id} {worker.slurm_job_state}".strip()

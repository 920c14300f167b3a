"""Everything the CLI prints about tasks and workers: rich tables for people, JSON for scripts."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..client import TaskInfo, TaskPage, WorkerInfo
from ..plural import plural
from ..status import Status
from .units import format_size

STATUS_STYLE = {
    Status.WAITING: "dim",
    Status.PENDING: "yellow",
    Status.ASSIGNED: "cyan",
    Status.ACCEPTED: "cyan",
    Status.RUNNING: "blue",
    Status.SUCCEEDED: "green",
    Status.FAILED: "bold red",
    Status.CANCELLED: "magenta",
}
_STATUS_CELL = {status: f"{status.value} {status.label}" for status in Status}
COMMAND_WIDTH = 60
PIPE_WIDTH = 250


def console() -> Console:
    """A terminal gets tables fitted to its width; a pipe or file gets whole lines."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=PIPE_WIDTH)


def print_json(records: Sequence[TaskInfo] | Sequence[WorkerInfo]) -> None:
    print(json.dumps([r.to_dict() for r in records], indent=2))


def duration(seconds: float | None) -> str:
    """Seconds as a table shows them: `12.34s` under a minute, else `H:MM:SS`."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _ago(timestamp: float | None) -> str:
    return "" if timestamp is None else f"{duration(max(0.0, time.time() - timestamp))} ago"


def short(text: str, width: int = COMMAND_WIDTH) -> str:
    if not text.isprintable() or "  " in text or text != text.strip():  # else split-join would change nothing
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
        layout = PlainLayout.fitted(headers, widths, right=right, elastic=elastic, room=room)
        return "\n".join([layout.line(headers), *(layout.line(row) for row in rows)])
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


def _width(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


class PlainLayout:
    """Columns of plain text with widths fixed in advance: a long listing is printed line by line with it."""

    def __init__(self, columns: Sequence[tuple[int, bool, bool]]) -> None:
        self.columns = tuple(columns)
        """Per column: its width, whether it is aligned right, whether a longer cell is cut to the width."""
        # The common line (ASCII, nothing to cut) is one str.format call.
        self._format = "  ".join(f"{{:{'>' if right else '<'}{width}}}" for width, right, _ in self.columns)
        self._cut = [(index, width) for index, (width, _, cut) in enumerate(self.columns) if cut]

    @classmethod
    def fitted(
        cls, headers: Sequence[str], widths: Sequence[int], *, right: set[str], elastic: str, room: int
    ) -> PlainLayout:
        """`elastic` is cut to `room`; cells of other columns longer than their column push the rest of their line
        along rather than lose characters."""
        pairs = zip(headers, widths, strict=True)
        return cls([(min(w, room) if h == elastic else w, h in right, h == elastic) for h, w in pairs])

    def line(self, cells: Sequence[str]) -> str:
        if "".join(cells).isascii():
            for index, width in self._cut:
                if len(cells[index]) > width:
                    break
            else:
                return self._format.format(*cells).rstrip()
        out = []
        for cell, (width, to_right, cut) in zip(cells, self.columns, strict=True):
            shown = _cut(cell, width) if cut and _width(cell) > width else cell
            pad = " " * (width - _width(shown))
            out.append(pad + shown if to_right else shown + pad)
        return "  ".join(out).rstrip()


def _cut(text: str, width: int) -> str:
    """The start of `text` that fits in `width` cells, with an ellipsis."""
    if text.isascii():
        return text[: width - 1] + "…"
    while text and cell_len(text) > width - 1:
        text = text[:-1]
    return text + "…"


def show(console: Console, grid: Table | str) -> None:
    """Print a table from `_table`, whichever way it was laid out."""
    if isinstance(grid, str):
        console.out(grid, highlight=False)
    else:
        console.print(grid)


_TASK_COLUMNS = ["ID", "STATUS", "EXIT", "WORKER", "WALL", "CPU", "PEAK RSS", "COMMAND"]
_TASK_NUMBERS = {"ID", "EXIT", "WORKER", "WALL", "CPU", "PEAK RSS"}


def tasks_table(tasks: Sequence[TaskInfo], width: int) -> Table | str:
    headers = list(_TASK_COLUMNS)
    with_container = any(t.container for t in tasks)
    if with_container:
        headers.append("CONTAINER")
    with_name = any(t.name for t in tasks)  # names and why a task waits
    with_reason = any(_why(t) for t in tasks)
    headers += ["NAME"] * with_name + ["WHY"] * with_reason
    rows = [_task_row(t, with_container, with_name, with_reason) for t in tasks]
    styles = [STATUS_STYLE[t.status] for t in tasks]
    return _table(headers, rows, right=_TASK_NUMBERS, elastic="COMMAND", width=width, styles=styles)


def _task_row(t: TaskInfo, with_container: bool = True, with_name: bool = True, with_reason: bool = True) -> list[str]:
    measured = _measured(t)
    usage = t.usage
    row = [
        str(t.task_id),
        _STATUS_CELL[t.status],
        "" if t.exit_code is None else str(t.exit_code),
        "" if t.worker_id is None else str(t.worker_id),
        duration(usage.wall_time if usage and usage.final else t.wall_time),
        duration(usage.cpu_time) if measured else "",  # type: ignore[union-attr]
        format_size(usage.peak_rss) if measured else "",  # type: ignore[union-attr]
        short(t.command),
    ]
    if with_container:
        row.append(t.container)
    if with_name:
        row.append(t.name)
    if with_reason:
        row.append(_why(t))
    return row


STREAM_MIN_WIDTHS = {"ID": 7, "STATUS": 11, "WALL": 7, "CPU": 7, "PEAK RSS": 9, "CONTAINER": 9, "NAME": 12}
"""Column widths a streamed listing keeps at least, whatever its first page holds: room for ids up to ten million,
every status, durations up to 9:59:59 and sizes up to 1023.9 GiB."""
_STREAM_CUT = {"COMMAND", "CONTAINER", "NAME"}
STREAM_MAX_TEXT = 40
"""A container or name column of a streamed listing is at most this wide; longer ones are cut."""


def print_task_pages(console: Console, pages: Iterable[TaskPage]) -> None:
    """A listing as its pages arrive, then the count of each status.

    A listing that arrives whole in its first page is laid out as before (a rich table when short). A longer one is
    plain text with every column, their widths fixed by the first page and the header, so each page is printed as
    it comes and no line waits for rows not yet seen.
    """
    counts: Counter[Status] = Counter()
    pages = iter(pages)
    first = next(pages, None)
    if first is None or first.last:
        tasks = first.tasks if first else []
        counts.update(t.status for t in tasks)
        show(console, tasks_table(tasks, console.width))
    else:
        headers = [*_TASK_COLUMNS, "CONTAINER", "NAME", "WHY"]
        rows = [_task_row(t) for t in first.tasks]
        widths = [
            max([cell_len(h), STREAM_MIN_WIDTHS.get(h, 0)] + [_width(row[i]) for row in rows])
            for i, h in enumerate(headers)
        ]
        for i, h in enumerate(headers):
            if h in ("CONTAINER", "NAME"):
                widths[i] = min(widths[i], max(STREAM_MAX_TEXT, cell_len(h)))
        fixed = sum(w + 2 for h, w in zip(headers, widths, strict=True) if h not in ("COMMAND", "WHY"))
        layout = PlainLayout(
            tuple(
                (
                    min(COMMAND_WIDTH, max(8, console.width - fixed)) if h == "COMMAND" else w,
                    h in _TASK_NUMBERS,
                    h in _STREAM_CUT,
                )
                for h, w in zip(headers, widths, strict=True)
            )
        )
        out = console.file
        out.write(layout.line(headers) + "\n")
        for page in itertools.chain([first], pages):
            counts.update(t.status for t in page.tasks)
            rows = rows if page is first else [_task_row(t) for t in page.tasks]
            out.write("".join(layout.line(row) + "\n" for row in rows))
            out.flush()
    console.print(f"[dim]{plural(sum(counts.values()), 'task')}: {describe_counts(counts) or 'none'}[/]")


def print_json_pages(pages: Iterable[TaskPage], out: TextIO) -> None:
    """A JSON array written as the pages arrive, one task per line: valid JSON once it ends, and no page waits."""
    out.write("[")
    separator = "\n"
    for page in pages:
        if page.tasks:
            out.write(separator + ",\n".join(json.dumps(t.to_dict()) for t in page.tasks))
            separator = ",\n"
        out.flush()
    out.write("\n]\n")


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
            f"{' job ' + usage['slurm_job_id'] if usage['slurm_job_id'] else ''}, wall {duration(usage['wall_time'])},"
            f" cpu {duration(usage['cpu_user'] + usage['cpu_system'])}, peak rss {format_size(usage['peak_rss'])},"
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


def describe_counts(counts: Mapping[Status, int]) -> str:
    """ "3 succeeded, 1 failed": each status that occurs, in the order of the status model."""
    return ", ".join(f"{counts[s]} {s.label}" for s in Status if counts.get(s))


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
    """The Slurm job id and its last seen state, for Slurm workers."""
    if not worker.slurm_job_id:
        return ""
    return f"{worker.slurm_job_id} {worker.slurm_job_state}".strip()

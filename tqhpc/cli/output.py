"""Everything the CLI prints about tasks and workers: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from ..client import TaskInfo, WorkerInfo
from ..status import Status

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


def console() -> Console:
    return Console(soft_wrap=False)


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


def tasks_table(tasks: Sequence[TaskInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "STATUS", "EXIT", "WORKER", "WALL", "COMMAND", "CONTAINER"):
        table.add_column(column, justify="right" if column in {"ID", "EXIT", "WORKER", "WALL"} else "left")
    for t in tasks:
        table.add_row(
            str(t.task_id),
            f"[{_STATUS_STYLE[t.status]}]{t.status.value} {t.status.label}[/]",
            "" if t.exit_code is None else str(t.exit_code),
            "" if t.worker_id is None else str(t.worker_id),
            _duration(t.wall_time),
            _short(t.command),
            t.container,
        )
    return table


def status_counts(tasks: Sequence[TaskInfo]) -> str:
    counts: dict[Status, int] = {}
    for t in tasks:
        counts[t.status] = counts.get(t.status, 0) + 1
    return ", ".join(f"{n} {s.label}" for s, n in sorted(counts.items(), key=lambda kv: list(Status).index(kv[0])))


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "STATE", "HOST", "PROVIDER", "RUNNING", "HELD", "CONC", "PREFETCH", "LAST PING"):
        table.add_column(column, justify="right" if column in {"ID", "RUNNING", "HELD", "CONC", "PREFETCH"} else "left")
    for w in workers:
        table.add_row(
            str(w.worker_id),
            w.name,
            w.state,
            w.hostname,
            w.provider or "manual",
            str(w.running),
            str(w.held),
            str(w.concurrency),
            str(w.prefetch),
            _ago(w.last_ping),
        )
    return table

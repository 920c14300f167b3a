"""Task listings read page by page beside the single writer, for StreamTasks and ListTasks.

A listing of a million tasks takes seconds to read. On the writer's connection it would hold up every submit and
status report for that long, and as one message it would have to be built whole before its first row could be
sent. Here each listing reads on a read-only connection and a thread of its own (the connection is only ever used
from that thread), each page in one snapshot, and reads the next page while the current one is on its way.

Rows become messages directly, column by field, rather than through TaskInfo records: at a million rows the
records' round trip was most of the server's time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from .._proto import pb
from ..errors import InvalidArgument
from ..status import parse_status_filter
from ..store import taskflow
from ..store import usage as usage_ops
from ..store.database import connect_reader, snapshot

PAGE_SIZE = taskflow.PAGE_SIZE
MAX_PAGE_SIZE = 50_000
"""The largest page a client may ask for: 50,000 tasks stay far below the channel's message limit."""


def task_filter(request: pb.ListTasksRequest) -> taskflow.TaskFilter:
    """Which tasks a ListTasksRequest asks for; an unknown status letter is refused."""
    statuses = parse_status_filter(request.status_filter) if request.HasField("status_filter") else frozenset()
    return taskflow.TaskFilter(
        statuses, request.name_filter, tuple(sorted(set(request.task_ids))), request.after_task_id
    )


def page_size(request: pb.ListTasksRequest) -> int:
    if request.page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size is at most {MAX_PAGE_SIZE:,}, not {request.page_size:,}")
    return request.page_size or PAGE_SIZE


class PageReader:
    """Reads pages of a listing on one read-only connection; used from one thread at a time."""

    def __init__(self, database: Path) -> None:
        self.conn = connect_reader(database)
        self.task_columns = _columns_on_wire(self.conn, "tasks", pb.Task)
        self.usage_columns = _columns_on_wire(self.conn, "task_attempts", pb.ResourceUsage)

    def close(self) -> None:
        self.conn.close()

    def read(self, wanted: taskflow.TaskFilter, size: int) -> pb.TaskPage:
        """The first `size` tasks `wanted` names, as one page; `last` when no task follows them."""
        conn = self.conn
        columns = self.task_columns
        with snapshot(conn):
            rows = taskflow.page_rows(conn, wanted, size + 1, ", ".join(columns))
            page = pb.TaskPage(last=len(rows) <= size)
            rows = rows[:size]
            ids = [row["task_id"] for row in rows]
            deps = taskflow.dependencies(conn, ids)
            usage = {
                task_id: pb.ResourceUsage(**{c: row[c] for c in self.usage_columns})
                for task_id, row in usage_ops.latest_attempts(conn, ids).items()
            }
            waits_for_slots = any(row["slots"] > 1 and row["status"] == "P" for row in rows)
            largest = taskflow.largest_live_worker(conn) if waits_for_slots else None
        add = page.tasks.add
        for row in rows:
            values = dict(zip(columns, row, strict=True))
            task_id = values["task_id"]
            if task_id in usage:
                values["usage"] = usage[task_id]
            if task_id in deps:
                values["after"] = deps[task_id]
            if largest is not None and values["slots"] > largest and values["status"] == "P":
                values["reason"] = taskflow.too_big_reason(values["slots"], largest)
            add(**values)
        return page


class StatsPageReader:
    """Reads pages of TaskStatsPages: of each task only what `tqhpc stats` sums up, in columns. The rows come as
    tuples of plain values and go into packed repeated fields, so a page costs a fraction of a StreamTasks page."""

    TASK_COLUMNS = "task_id, status, failure, slots, memory_limit, ended_at"
    USAGE_SQL = (
        "SELECT task_id, wall_time, cpu_user + cpu_system, peak_rss, final, failure FROM task_attempts "
        "WHERE {ids} ORDER BY task_id, attempt"
    )

    def __init__(self, database: Path) -> None:
        self.conn = connect_reader(database)
        self.conn.row_factory = None  # plain tuples: nothing here is read by name

    def close(self) -> None:
        self.conn.close()

    def read(self, wanted: taskflow.TaskFilter, size: int) -> pb.TaskStatsPage:
        conn = self.conn
        with snapshot(conn):
            rows = taskflow.page_rows(conn, wanted, size + 1, self.TASK_COLUMNS)
            last = len(rows) <= size
            rows = rows[:size]
            ids = [row[0] for row in rows]
            usage = {row[0]: row for row in taskflow.select_by_ids(conn, self.USAGE_SQL, ids)}  # the latest stays
        page = pb.TaskStatsPage(last=last, last_task_id=ids[-1] if ids else 0)
        if not rows:
            return page
        _, statuses, failures, slots, limits, ended = zip(*rows, strict=True)
        page.statuses = "".join(statuses)
        page.failures.extend(failures)
        page.slots.extend(slots)
        page.memory_limits.extend(limits)
        page.ended_at.extend(0.0 if e is None else e for e in ended)
        none = (0, 0.0, 0.0, 0, 0, "")
        _, walls, cpus, peaks, finals, usage_failures = zip(*(usage.get(i, none) for i in ids), strict=True)
        page.wall_times.extend(walls)
        page.cpu_times.extend(cpus)
        page.peak_rss.extend(peaks)
        page.final.extend(map(bool, finals))
        page.usage_failures.extend(usage_failures)
        return page


def _columns_on_wire(conn: sqlite3.Connection, table: str, message: type[Message]) -> tuple[str, ...]:
    """The table's columns that the message has a field of the same name for (the rest stays on the server)."""
    fields = message.DESCRIPTOR.fields_by_name
    return tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] in fields)


async def task_pages(database: Path, wanted: taskflow.TaskFilter, size: int = PAGE_SIZE) -> AsyncIterator[pb.TaskPage]:
    """The listing's pages in order, the last one marked. Leaving early (a client that went away) closes the
    connection once the read in flight is done."""
    async for page in _pages(PageReader, database, wanted, size):
        yield page


async def stats_pages(
    database: Path, wanted: taskflow.TaskFilter, size: int = PAGE_SIZE
) -> AsyncIterator[pb.TaskStatsPage]:
    """`task_pages` as TaskStatsPages."""
    async for page in _pages(StatsPageReader, database, wanted, size):
        yield page


def _last_id(page: Any) -> int:
    return page.tasks[-1].task_id if isinstance(page, pb.TaskPage) else page.last_task_id


async def _pages(
    reader_type: type[PageReader] | type[StatsPageReader], database: Path, wanted: taskflow.TaskFilter, size: int
) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tqhpc-listing")
    opened = thread.submit(reader_type, database)
    upcoming: asyncio.Future[Any] | None = None
    try:
        reader = await asyncio.wrap_future(opened)
        upcoming = loop.run_in_executor(thread, reader.read, wanted, size)
        while True:
            page = await upcoming
            if not page.last:
                wanted = taskflow.TaskFilter(wanted.statuses, wanted.name, wanted.task_ids, _last_id(page))
                upcoming = loop.run_in_executor(thread, reader.read, wanted, size)
            yield page
            if page.last:
                return
    finally:
        if upcoming is not None:
            upcoming.cancel()  # its read still runs to the end on the thread; nobody waits for it
        thread.submit(_close, opened)
        thread.shutdown(wait=False)


def _close(opened: Future[Any]) -> None:
    """Close the listing's connection on its own thread, after any read still running there."""
    if opened.exception() is None:
        opened.result().close()

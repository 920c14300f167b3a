"""Listing a long queue as a stream of pages, beside the writer; and dispatch that does not scan the queue.

Against a real server process (and, for dispatch, the real store on a SQLite file): 20,000 tasks listed by the CLI,
the Python client and the seed's one-message ListTasks, with every filter; a listing in progress that does not
hold up a submit; and pings whose cost does not grow with a queue of tasks the worker cannot run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from conftest import tqhpc_command

from tqhpc import Client, TaskSpec
from tqhpc._proto import pb
from tqhpc.channel import open_channel
from tqhpc.client import ClientError
from tqhpc.store import Database, taskflow
from tqhpc.store import workers as worker_ops
from tqhpc.store.taskflow import NewTask

TASKS = 20_000


def _spec(index: int) -> TaskSpec:
    return TaskSpec(f"python sim.py --seed {index}", name="even" if index % 2 == 0 else "odd")


@pytest.fixture
def queued(client: Client) -> list[int]:
    """20,000 pending tasks, named even and odd by position; the first ten of each name cancelled."""
    ids = client.submit_many(_spec(i) for i in range(TASKS))
    client.cancel(ids[:20])
    return ids


def _cli(server, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQHPC_ACCESS=str(server.access_file))
    return subprocess.run(tqhpc_command(*args), capture_output=True, text=True, timeout=120, env=env, check=False)


def _row_ids(stdout: str) -> list[int]:
    """The task ids of a table's rows, in the order printed."""
    return [
        int(line.split()[0]) for line in stdout.splitlines() if line.strip()[:1].isdigit() and " tasks: " not in line
    ]


def test_tasks_command_streams_every_row_in_order(server, client, queued) -> None:
    listed = _cli(server, "tasks")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    # A listing longer than one page: plain text with every column, laid out by the first page.
    assert lines[0].split() == ["ID", "STATUS", "EXIT", "WORKER", "WALL", "CPU", "PEAK", "RSS", "COMMAND",
                                "CONTAINER", "NAME", "WHY"]  # fmt: skip
    assert _row_ids(listed.stdout) == queued
    assert lines[-1] == f"{TASKS} tasks: {TASKS - 20} pending, 20 cancelled"
    # The command's column is as wide on the last page as on the first.
    assert lines[1].index("python sim.py") == lines[-2].index("python sim.py")

    as_json = _cli(server, "tasks", "--json")
    records = json.loads(as_json.stdout)
    assert [r["task_id"] for r in records] == queued
    assert records[0]["status"] == "X" and records[-1]["name"] == "odd"

    # The client reads the same listing page by page; only the final page is marked last.
    pages = list(client.task_pages(page_size=3000))
    assert [len(p.tasks) for p in pages] == [3000] * 6 + [2000]
    assert [p.last for p in pages] == [False] * 6 + [True]
    assert [t.task_id for p in pages for t in p.tasks] == queued
    assert [t.task_id for t in client.tasks()] == queued

    # The seed's ListTasks still answers with the whole listing in one message.
    channel = open_channel(server.access, options=[("grpc.max_receive_message_length", 1 << 28)])
    stub_metadata = (("authorization", f"bearer {server.access.token}"),)
    whole = pb.TaskList.FromString(
        channel.unary_unary("/taskqueue.TaskQueue/ListTasks")(
            pb.ListTasksRequest().SerializeToString(), metadata=stub_metadata, timeout=60
        )
    )
    channel.close()
    assert [t.task_id for t in whole.tasks] == queued
    assert whole.tasks[0].status == "X" and whole.tasks[1].name == "odd"


def test_filters_on_a_streamed_listing(server, client, queued) -> None:
    by_status = _cli(server, "tasks", "--status", "X")
    assert _row_ids(by_status.stdout) == queued[:20]
    assert by_status.stdout.splitlines()[-1] == "20 tasks: 20 cancelled"
    by_name = _cli(server, "tasks", "--name", "odd", "--status", "P")
    assert _row_ids(by_name.stdout) == queued[21::2]
    assert json.loads(_cli(server, "tasks", "--json", "--status", "F").stdout) == []

    # Several statuses, merged in id order across pages; a name with a status; ids far apart, most of them not
    # matching the status, so whole chunks of ids give nothing and the listing must go on past them.
    assert [t.task_id for t in client.iter_tasks("XP")] == queued
    assert [t.task_id for t in client.task_pages("PX", page_size=700) for t in t.tasks] == queued
    assert [t.task_id for t in client.iter_tasks("X", name="even")] == queued[:20:2]
    scattered = queued[::7]
    cancelled = [t for t in scattered if t in set(queued[:20])]
    assert [t.task_id for t in client.iter_tasks(ids=scattered)] == scattered
    assert [t.task_id for t in client.iter_tasks("X", ids=list(reversed(scattered)))] == cancelled
    assert [t.task_id for t in client.iter_tasks("X", ids=[*scattered, queued[-1]])] == cancelled
    assert [t.task_id for t in client.iter_tasks(after=queued[-5])] == queued[-4:]
    assert [t.task_id for t in client.iter_tasks(ids=[10**9])] == []


def test_bad_listing_requests_get_clear_errors(stub, queued) -> None:
    with pytest.raises(grpc.RpcError) as letter:
        list(stub.StreamTasks(pb.ListTasksRequest(status_filter="Q"), timeout=10))
    assert letter.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown status letter 'Q'" in letter.value.details()
    with pytest.raises(grpc.RpcError) as size:
        list(stub.StreamTasks(pb.ListTasksRequest(page_size=10**6), timeout=10))
    assert size.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size is at most 50,000" in size.value.details()


def test_a_listing_in_progress_does_not_hold_up_a_submit(server, client, stub) -> None:
    """A reader that takes its time (a pager) keeps its listing open; submits go on, and the pages the server
    reads after a submit show it: each page is its own snapshot, not one read held open for the whole listing.

    The listing (40 MB of commands) is far longer than what the transport lets through to a reader that waits, so
    most of it is read on the server after the submit."""
    padding = "x" * 2000
    queued = client.submit_many(f"echo {i} {padding}" for i in range(TASKS))
    pages = stub.StreamTasks(pb.ListTasksRequest(page_size=500), timeout=60)
    first = next(pages)
    assert [t.task_id for t in first.tasks] == queued[:500]
    time.sleep(0.5)  # the server has sent what the transport takes, and waits on this reader
    start = time.monotonic()
    new = client.submit("echo late")
    assert time.monotonic() - start < 1.0
    rest = [t.task_id for page in pages for t in page.tasks]
    assert rest == [*queued[500:], new]

    # A reader that stops early ends its listing on the server; the next listing is whole.
    for page in client.task_pages(page_size=500):
        assert not page.last
        break
    assert len(client.tasks()) == TASKS + 1
    assert "Traceback" not in server.log()


def test_a_listing_cut_off_by_the_server_is_a_clear_error(server, client) -> None:
    """The server dies in the middle of a listing: the reader gets a ClientError with one line, not a hang."""
    client.submit_many(f"echo {i} {'x' * 2000}" for i in range(TASKS))
    pages = client.task_pages(page_size=500)
    next(pages)
    server.stop(signal.SIGKILL)
    with pytest.raises(ClientError) as cut:
        for _ in pages:
            pass
    assert len(str(cut.value).splitlines()) == 1
    assert cut.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)


# --- dispatch with a long queue of tasks the worker cannot run -------------------------------------------------


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "tqhpc.db")
    yield database
    database.close()


def _worker(db: Database, concurrency: int, *, containers: bool = True, walltime_end: float | None = None) -> int:
    def register(conn):
        worker = worker_ops.register(
            conn, name="w", concurrency=concurrency, prefetch=0, hostname="h", pid=1, now=1.0, walltime_end=walltime_end
        )
        conn.execute(
            "UPDATE workers SET container_capable = ? WHERE worker_id = ?", (int(containers), worker.worker_id)
        )
        return worker.worker_id

    return db.call(register)


def _ping_steps(db: Database, worker_id: int, now: float = 2.0) -> tuple[list[int], int]:
    """The tasks a ping hands out, and how many SQLite virtual machine steps (in thousands) the ping took."""

    def ping(conn):
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(count, 1000)
        try:
            return [t.task_id for t in worker_ops.ping(conn, worker_id, now).tasks], steps[0]
        finally:
            conn.set_progress_handler(None, 0)

    return db.call(ping)


def test_a_small_task_behind_many_big_ones_is_found(db) -> None:
    """A 1-slot worker finds the 1-slot task queued behind more 2-slot tasks than any bounded scan looks at."""
    big = [NewTask(f"big {i}", slots=2) for i in range(taskflow.SCAN_LIMIT + 500)]
    ids = db.call(lambda c: taskflow.insert_batch(c, [*big, NewTask("small")], 1.0))
    worker = _worker(db, concurrency=1)
    given, _ = _ping_steps(db, worker)
    assert given == [ids[-1]]


def test_a_ping_costs_the_same_whatever_the_queue_it_cannot_run(db) -> None:
    """Tasks too big for the worker, container tasks for a worker without containers, tasks declaring more time
    than its walltime has left: a queue of 20,000 of them costs its ping about what a queue of 200 does."""

    def fill(count: int) -> None:
        specs = [
            NewTask(f"t {i}", slots=4) if i % 2 else NewTask(f"t {i}", container="docker://busybox", time_request=3600)
            for i in range(count)
        ]
        db.call(lambda c: taskflow.insert_batch(c, specs, 1.0))

    no_containers = _worker(db, concurrency=2, containers=False)
    short_walltime = _worker(db, concurrency=2, walltime_end=62.0)  # 60 s left at the ping
    fill(200)
    small = {w: _ping_steps(db, w) for w in (no_containers, short_walltime)}
    fill(20_000 - 200)
    large = {w: _ping_steps(db, w) for w in (no_containers, short_walltime)}
    for worker in (no_containers, short_walltime):
        assert small[worker][0] == large[worker][0] == []
        assert large[worker][1] <= small[worker][1] + PING_STEPS_MARGIN, (small, large)


PING_STEPS_MARGIN = 15
"""Thousands of SQLite steps a ping may grow by from a queue of 200 to one of 20,000 (SQLite counts them exactly:
this is no timing). A declared run time is checked over a bounded window of rows, which the longer queue fills
(8 here); a scan of the queue grows with it (28 and 38 before the pending-size indexes)."""


def test_a_ping_costs_the_same_whatever_the_tasks_the_worker_has_finished(db) -> None:
    """A long-lived worker's pings do not slow down as it works: the slots it holds are found through indexes, not
    by reading every task it ever ran. Its held and cancelled-but-not-yet-killed tasks still count, each once."""
    worker = _worker(db, concurrency=8)

    def finish(count: int) -> None:
        def run(conn) -> None:
            first = conn.execute("SELECT COALESCE(MAX(task_id), 0) FROM tasks").fetchone()[0]
            taskflow.insert_batch(conn, [NewTask(f"t {i}") for i in range(count)], 1.0)
            conn.execute("UPDATE tasks SET status = 'S', worker_id = ? WHERE task_id > ?", (worker, first))

        db.call(run)

    def held(statuses: list[tuple[str, int, int]]) -> int:
        """Give the worker tasks of (status, slots, kill_pending), and return the slots the store says it holds."""

        def run(conn) -> int:
            for status, slots, kill_pending in statuses:
                (task_id,) = taskflow.insert_batch(conn, [NewTask("held", slots=slots)], 1.0)
                conn.execute(
                    "UPDATE tasks SET status = ?, worker_id = ?, kill_pending = ? WHERE task_id = ?",
                    (status, worker, kill_pending, task_id),
                )
            return taskflow.held_slots(conn, worker)

        return db.call(run)

    finish(200)
    small = _ping_steps(db, worker)
    finish(20_000 - 200)
    large = _ping_steps(db, worker)
    assert small[0] == large[0] == []
    assert large[1] <= small[1] + 2, (small, large)
    # A running task (2 slots), a cancelled one its worker has still to kill (1), one both assigned and to be
    # killed (4, counted once), and a finished one whose kill is owed (1): 8 slots, none from the 20,000 finished.
    assert held([("R", 2, 0), ("X", 1, 1), ("A", 4, 1), ("S", 1, 1)]) == 8

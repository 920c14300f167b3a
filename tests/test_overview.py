"""GetOverview: the queue at a glance for `tqhpc top`, against a real server and worker, and its SQL plans.

The overview is asked for every second for as long as someone watches, with queues of a million tasks: every query
behind it must go through an index (checked with EXPLAIN QUERY PLAN on the real store), never read the table.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from conftest import wait_until

from tqhpc import Client
from tqhpc._proto import pb
from tqhpc.status import Status
from tqhpc.store import Database
from tqhpc.store import overview as overview_ops
from tqhpc.store.taskflow import NewTask


def test_overview_counts_rates_failures_and_workers(client: Client, workers) -> None:
    workers.start("--concurrency", "2", "--name", "watched")
    good = client.submit_many([{"command": "true", "name": "fine"}] * 3)
    bad = client.submit("echo first line >&2; echo 'boom: no such input' >&2; exit 3", name="broken")
    client.wait([*good, bad], timeout=30, progress=False)
    held = client.submit("sleep 30", name="fine")
    wait_until(lambda: client.task(held).status == Status.RUNNING, what="the sleep to run")

    seen = client.overview()
    assert seen.counts == {Status.SUCCEEDED: 3, Status.FAILED: 1, Status.RUNNING: 1}
    assert seen.total == 5
    assert seen.ended_last_10s == seen.ended_last_60s == 4
    assert abs(seen.server_time - time.time()) < 5

    [failure] = seen.failures
    assert failure.task.task_id == bad
    assert failure.task.failure == "exit_code" and failure.task.exit_code == 3
    assert failure.stderr_tail == "first line\nboom: no such input"

    [worker] = seen.workers
    assert worker.name == "watched" and worker.hostname
    assert (worker.running, worker.held) == (1, 1)
    wait_until(lambda: client.overview().workers[0].stats is not None, what="the worker's host state")
    stats = client.overview().workers[0].stats
    assert stats.memory_used > 0 and stats.memory_available > 0

    # One sweep: its counts and failures alone; the workers are the same.
    fine = client.overview(name="fine")
    assert fine.counts == {Status.SUCCEEDED: 3, Status.RUNNING: 1}
    assert fine.failures == [] and fine.ended_last_60s == 3
    assert [w.worker_id for w in fine.workers] == [worker.worker_id]
    assert client.overview(name="nothing by this name").counts == {}
    client.cancel([held])


def test_overview_stderr_tail_keeps_the_end_of_long_output(client: Client, workers) -> None:
    workers.start("--concurrency", "1")
    noisy = client.submit('for i in $(seq 1 500); do echo "line $i of the log" >&2; done; exit 1')
    client.wait([noisy], timeout=30, progress=False)
    [failure] = client.overview().failures
    lines = failure.stderr_tail.splitlines()
    assert lines[-1] == "line 500 of the log"
    assert lines[0].startswith("line ") and lines[0].endswith(" of the log")  # cut at a line's start
    assert len(failure.stderr_tail) <= 400


def test_overview_lists_at_most_the_failures_asked_for_newest_first(client: Client, workers) -> None:
    workers.start("--concurrency", "1")
    ids = [client.submit(f"exit {code}") for code in range(1, 9)]
    client.wait(ids, timeout=30, progress=False)
    assert [f.task.task_id for f in client.overview().failures] == ids[::-1][:5]
    assert [f.task.task_id for f in client.overview(failures=2).failures] == ids[::-1][:2]
    assert len(client.overview(failures=50).failures) == 8


def test_bad_overview_requests_get_clear_errors(stub) -> None:
    with pytest.raises(grpc.RpcError) as many:
        stub.GetOverview(pb.OverviewRequest(failures=51), timeout=10)
    assert many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert many.value.details() == "failures is at most 50, not 51"
    with pytest.raises(grpc.RpcError) as long_name:
        stub.GetOverview(pb.OverviewRequest(name="x" * 300), timeout=10)
    assert long_name.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_overview_needs_the_token(bare_channel) -> None:
    call = bare_channel.unary_unary(
        "/taskqueue.TaskQueue/GetOverview",
        request_serializer=pb.OverviewRequest.SerializeToString,
        response_deserializer=pb.Overview.FromString,
    )
    with pytest.raises(grpc.RpcError) as refused:
        call(pb.OverviewRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("name", ["", "sweep-a"])
def test_overview_queries_go_through_indexes(tmp_path: Path, name: str) -> None:
    """Every statement of an overview, planned by SQLite on the real schema: an index search, or a scan of an index
    that stays small or is read in order up to a limit; never the table itself, never a sort."""
    database = Database(tmp_path / "tqhpc.db")
    database.call(lambda c: _fill(c, 2000))
    database.close()
    conn = sqlite3.connect(tmp_path / "tqhpc.db")
    conn.row_factory = sqlite3.Row
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    found = overview_ops.read(conn, time.time(), 5, name)
    conn.set_trace_callback(None)
    assert found.counts and len(found.failures) == 5
    assert len(statements) == 4
    for statement in statements:
        plan = " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement))
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (statement, plan)
        assert "TEMP B-TREE" not in plan, (statement, plan)
        # Scans allowed: a count by status reads its whole covering index, and the latest failures walk the index of
        # failed tasks alone, newest first, stopping at the limit. Everything else is a search.
        allowed_scans = ("SCAN tasks USING COVERING INDEX tasks_by_status", "SCAN tasks USING INDEX tasks_failed")
        assert plan.startswith("SEARCH") or plan in allowed_scans, (statement, plan)


def _fill(conn: sqlite3.Connection, count: int) -> None:
    from tqhpc.store import taskflow

    ids = taskflow.insert_batch(conn, [NewTask(f"t {i}", name=f"sweep-{'ab'[i % 2]}") for i in range(count)], 1.0)
    now = time.time()
    for index, task_id in enumerate(ids):
        status = "SFP"[index % 3]
        ended = now - index if status != "P" else None
        conn.execute("UPDATE tasks SET status = ?, ended_at = ? WHERE task_id = ?", (status, ended, task_id))

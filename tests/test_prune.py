"""Pruning ended tasks, by hand (`tqhpc prune`) and by the server (`prune_after`): real server, workers and CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from conftest import ServerProcess, Workers, start_server, wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client, Status
from tqhpc._proto import pb


def _output_files(server: ServerProcess, task_id: int) -> list[Path]:
    return sorted((server.state_dir / "logs").rglob(f"{task_id}.*"))


def _finished(client: Client, ids: list[int]) -> None:
    wait_until(lambda: all(client.task(i).status.terminal for i in ids), what=f"tasks {ids} to end")


def test_prune_removes_ended_tasks_with_their_output_and_keeps_the_rest(server, client: Client, workers) -> None:
    done = client.submit("echo done")
    retried = client.submit("echo attempt; exit 3", retry=1)  # two attempts: one output moved aside as ID.1.*
    needed = client.submit("echo needed")
    workers.start("--concurrency", "2")
    _finished(client, [done, retried, needed])
    workers.stop_all()
    pending = client.submit("echo later")
    waiting = client.submit("echo after both", after=[needed, pending])  # W: still needs `needed`'s status
    assert len(_output_files(server, retried)) == 2 and _output_files(server, done)

    pruned = run("prune", "--older-than", "0s", access=server.access_file)
    assert pruned.returncode == 0 and pruned.stdout.strip() == "removed 2 tasks", pruned

    for gone in (done, retried):
        with pytest.raises(Exception, match=f"no task {gone}"):
            client.task(gone)
        assert _output_files(server, gone) == []
    assert [t.task_id for t in client.tasks()] == [needed, pending, waiting]
    assert client.task(needed).status == Status.SUCCEEDED and _output_files(server, needed)
    assert client.task(waiting).status == Status.WAITING
    with sqlite3.connect(server.state_dir / "tqhpc.db") as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM task_attempts WHERE task_id IN (?, ?)", (done, retried)).fetchone()[0]
            == 0
        )
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_prune_keeps_tasks_younger_than_asked_and_those_of_other_names_or_statuses(
    server, client: Client, workers
) -> None:
    ok = client.submit("true", name="keep-me")
    failed = client.submit("exit 1", name="sweep")
    succeeded = client.submit("true", name="sweep")
    workers.start("--concurrency", "2")
    _finished(client, [ok, failed, succeeded])
    assert client.prune(3600) == []  # nothing ended an hour ago
    assert client.prune(0, name="sweep", status="F") == [failed]
    assert client.prune(0, name="sweep") == [succeeded]
    assert [t.task_id for t in client.tasks()] == [ok]


def test_bad_prune_requests_are_refused_clearly(server, stub) -> None:
    assert_one_line_error(run("prune", "--older-than", "soon", access=server.access_file), "is not a duration", code=2)
    assert_one_line_error(run("prune", "--older-than", "1d", "--status", "P", access=server.access_file),
                          "only ended tasks are pruned", code=2)  # fmt: skip
    for request, expected in (
        (pb.PruneRequest(older_than_seconds=-1), "older_than_seconds must be a finite number"),
        (pb.PruneRequest(older_than_seconds=float("nan")), "older_than_seconds must be a finite number"),
        (pb.PruneRequest(status="R"), "only ended tasks are pruned"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.PruneTasks(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in refused.value.details()


@contextmanager
def _own_server(tmp_path: Path, *flags: str) -> Iterator[tuple[ServerProcess, Workers, Client]]:
    """A server with these settings, its workers and a client; all stopped at the end."""
    server = start_server(tmp_path / "state", *flags)
    workers = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            yield server, workers, client
    finally:
        workers.stop_all()
        server.stop()


def test_the_server_prunes_by_itself_with_prune_after(tmp_path: Path) -> None:
    with _own_server(tmp_path, "--prune-after", "1", "--reap-interval", "0.5") as (server, workers, client):
        task_id = client.submit("echo soon gone")
        workers.start()
        _finished(client, [task_id])
        assert _output_files(server, task_id)
        wait_until(lambda: client.tasks() == [], timeout=10, what="the ended task to be pruned")
        assert _output_files(server, task_id) == []


def test_a_runaway_task_has_its_output_cut_at_max_task_output_with_a_note(tmp_path: Path) -> None:
    with _own_server(tmp_path, "--max-task-output", "1000") as (server, workers, client):
        task_id = client.submit("for i in $(seq 1 600); do echo line-$i; echo err-$i >&2; done")
        workers.start()
        _finished(client, [task_id])
        assert client.task(task_id).status == Status.SUCCEEDED  # cutting its output does not fail the task
        for stream, first in (("O", b"line-1\n"), ("E", b"err-1\n")):
            data = b"".join(c.data for c in client.logs(task_id) if c.stream == stream)
            kept, note = data[:1000], data[1000:]
            assert kept.startswith(first) and len(data) < 1200
            assert (
                note == b"\n[tqhpc: this output was cut at 1000 bytes (the server's max_task_output); "
                b"the rest was dropped]\n"
            )
        assert "output reached max_task_output (1000 bytes)" in (server.state_dir / "server.log").read_text()

"""A storage that fails for a while (a full disk, a database another process holds locked) loses nothing.

Real server, real worker: the server's state directory sits on a small tmpfs that the test fills, or its database is
held under `BEGIN EXCLUSIVE` by another connection. The worker keeps what it could not report and sends it again
until it is stored; the server stays up, answers reads, says so once in its log, and takes up again when the
storage comes back.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, Workers, fill_disk, output_of, start_server, wait_until

from tqhpc import Client
from tqhpc.server.app import ServerLogHandler
from tqhpc.store import Database

OUTPUT_LINES = 3_000_000  # `seq` of these: about 23 MB, most of which cannot be stored until space comes back
STORAGE_FAILURE = "the server's storage is failing"


def _expected_output() -> bytes:
    return "".join(f"{n}\n" for n in range(1, OUTPUT_LINES + 1)).encode()


def _said(server: ServerProcess) -> str:
    """What the server said: its server.log and what it printed (where it says what the full disk kept out of it)."""
    log = server.state_dir / "server.log"
    return (log.read_text(errors="replace") if log.exists() else "") + server.log()


def _stored_output(client: Client, task_id: int) -> bytes:
    return b"".join(chunk.data for chunk in client.logs(task_id) if chunk.stream == "O")


@pytest.fixture
def disk_server(small_disk: Path) -> Iterator[ServerProcess]:
    proc = start_server(small_disk, "--worker-timeout", "3", "--reap-interval", "0.5")
    yield proc
    if proc.process.poll() is None:
        proc.stop()


def test_a_full_disk_holds_the_output_back_until_space_comes_back(
    small_disk: Path, disk_server: ServerProcess, tmp_path: Path
) -> None:
    pool = Workers(disk_server, tmp_path)
    try:
        with Client(disk_server.access_file) as client:
            worker = pool.start("--concurrency", "1")
            warmup = client.submit("echo ready")
            assert client.wait([warmup], timeout=30)[0].status == "S"
            filler = fill_disk(small_disk, leave=2 << 20)

            task_id = client.submit(f"seq 1 {OUTPUT_LINES}")
            wait_until(
                lambda: STORAGE_FAILURE in _said(disk_server),
                30,
                what=lambda: f"the failure said: {_said(disk_server)}",
            )
            time.sleep(3)  # several reports refused meanwhile
            # The server is up and answers reads; the worker holds the task and its output.
            assert disk_server.process.poll() is None
            # Its start is stored after the output that came with it: the task may still show as assigned.
            assert client.task(task_id).status in {"A", "R"}
            assert worker.poll() is None, output_of(worker)
            assert len(client.tasks()) == 2

            filler.unlink()
            results = client.wait([task_id], timeout=60)
            assert results[0].status == "S", output_of(worker)
            assert _stored_output(client, task_id) == _expected_output()
            assert worker.poll() is None, output_of(worker)

            later = client.submit("echo after")
            assert client.wait([later], timeout=30)[0].status == "S"
            back = "the server's storage works again"
            wait_until(lambda: back in _said(disk_server), 30, what="the end of the outage to be logged")
    finally:
        pool.stop_all()
    log = _said(disk_server)
    assert "--- Logging error ---" not in log
    assert "Traceback" not in log
    assert log.count(STORAGE_FAILURE) == 1, log
    worker_said = output_of(worker)
    assert worker_said.count("pinging failed on the server") == 1, worker_said
    assert "pinging works again" in worker_said, worker_said


def test_a_disk_that_stays_full_pauses_the_task_and_drops_nothing(
    small_disk: Path, disk_server: ServerProcess, tmp_path: Path
) -> None:
    """Output that cannot be stored is not thrown away: the worker holds a bounded amount, then the task's writes
    wait (its pipe fills) until the server stores again; the task is not failed nor finished with a cut output."""
    pool = Workers(disk_server, tmp_path)
    try:
        with Client(disk_server.access_file) as client:
            worker = pool.start("--concurrency", "1")
            task_id = client.submit(f"sleep 2; seq 1 {OUTPUT_LINES}")
            wait_until(lambda: client.task(task_id).status == "R", 30, what="the task to start")
            filler = fill_disk(small_disk, leave=0)  # server.log cannot take a line either: it goes to stderr
            wait_until(lambda: STORAGE_FAILURE in _said(disk_server), 30, what="the storage failure to be logged")
            time.sleep(4)
            assert client.task(task_id).status in {"A", "R"}
            assert worker.poll() is None, output_of(worker)
            stored = len(_stored_output(client, task_id))
            assert stored < len(_expected_output())
            filler.unlink()
            assert client.wait([task_id], timeout=60)[0].status == "S"
            assert _stored_output(client, task_id) == _expected_output()
    finally:
        pool.stop_all()
    printed = disk_server.log()
    assert "--- Logging error ---" not in printed, printed
    assert "Traceback" not in printed, printed
    assert printed.count(STORAGE_FAILURE) <= 1, printed


def test_a_database_held_locked_by_another_process_delays_reports_and_loses_nothing(
    disk_server: ServerProcess, tmp_path: Path
) -> None:
    pool = Workers(disk_server, tmp_path)
    try:
        with Client(disk_server.access_file) as client:
            worker = pool.start("--concurrency", "1")
            warmup = client.submit("echo ready")
            assert client.wait([warmup], timeout=30)[0].status == "S"
            task_id = client.submit("sleep 1; seq 1 200000")

            held = threading.Event()
            release = threading.Event()

            def hold_lock() -> None:
                conn = sqlite3.connect(disk_server.state_dir / "tqhpc.db", isolation_level=None, timeout=30)
                conn.execute("BEGIN EXCLUSIVE")
                held.set()
                release.wait(30)
                conn.execute("ROLLBACK")
                conn.close()

            holder = threading.Thread(target=hold_lock)
            holder.start()
            try:
                assert held.wait(30)
                time.sleep(6)  # the task ends meanwhile; its report cannot be stored
                assert disk_server.process.poll() is None
                assert worker.poll() is None, output_of(worker)
            finally:
                release.set()
                holder.join()
            results = client.wait([task_id], timeout=60)
            assert results[0].status == "S", output_of(worker)
            expected = "".join(f"{n}\n" for n in range(1, 200_001)).encode()
            assert _stored_output(client, task_id) == expected
    finally:
        pool.stop_all()
    assert "--- Logging error ---" not in _said(disk_server)


def test_reads_batched_with_a_write_the_full_disk_refuses_still_get_their_answer(small_disk: Path) -> None:
    """The store runs the operations waiting together in one transaction; when its commit fails for want of space,
    the reads among them are answered all the same, and only the write fails."""
    db = Database(small_disk / "tqhpc.db")
    try:
        db.call(lambda c: c.execute("CREATE TABLE ballast (data BLOB)"))
        fill_disk(small_disk, leave=0)
        gate = threading.Event()
        db.submit(lambda c: gate.wait(10))  # holds the writer while the next two queue up behind it
        write = db.submit(lambda c: c.execute("INSERT INTO ballast VALUES (zeroblob(4 * 1024 * 1024))"))
        read = db.submit(lambda c: c.execute("SELECT count(*) FROM ballast").fetchone()[0])
        gate.set()
        assert read.result(30) == 0
        with pytest.raises(sqlite3.OperationalError, match="full"):
            write.result(30)
    finally:
        with contextlib.suppress(Exception):
            (small_disk / "filler").unlink()
        db.close()


def test_the_server_log_on_a_full_disk_goes_to_stderr_without_tracebacks(
    small_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = small_disk / "server.log"
    handler = ServerLogHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tqhpc.test-full-disk")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("before the disk is full")
        filler = fill_disk(small_disk, leave=0)
        for number in range(3):
            logger.warning("record %d %s", number, "x" * 8192)  # more than a page: never fits in the file's slack
        printed = capfd.readouterr().err
        assert "--- Logging error ---" not in printed
        assert "Traceback" not in printed
        assert printed.count(f"cannot write {path}") == 1, printed
        for number in range(3):
            assert f"WARNING record {number} " in printed
        filler.unlink()
        logger.warning("after space came back")
        assert "writing" in capfd.readouterr().err
        assert "after space came back" in path.read_text()
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_a_worker_silenced_by_a_full_disk_is_not_declared_lost(
    small_disk: Path, disk_server: ServerProcess, tmp_path: Path
) -> None:
    """Its reports were refused for longer than the worker timeout (3 s): the silence is the server's, not the
    worker's. Pings are rare here, so only the session speaks for the worker."""
    pool = Workers(disk_server, tmp_path)
    try:
        with Client(disk_server.access_file) as client:
            worker = pool.start("--concurrency", "1", "--ping-interval", "60")
            task_id = client.submit("sleep 1; seq 1 200000; sleep 1")
            wait_until(lambda: client.task(task_id).status == "R", 30, what="the task to start")
            filler = fill_disk(small_disk, leave=0)
            time.sleep(7)
            filler.unlink()
            results = client.wait([task_id], timeout=60)
            assert results[0].status == "S", output_of(worker)
            assert results[0].attempts == 1
            expected = "".join(f"{n}\n" for n in range(1, 200_001)).encode()
            assert _stored_output(client, task_id) == expected
            assert worker.poll() is None, output_of(worker)
            assert client.workers()[0].state == "running", client.workers()
    finally:
        pool.stop_all()
    assert "lost: no ping" not in _said(disk_server)

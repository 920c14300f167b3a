"""The server as a process: the state-dir lock, the access file, clean shutdown."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess

import pytest
from conftest import start_server, tqhpc_command, wait_until

from tqhpc import Client, Status


def test_a_second_server_on_the_same_state_dir_exits_at_once(server, client: Client) -> None:
    ids = [client.submit(f"echo {i}") for i in range(5)]
    second = subprocess.run(
        tqhpc_command("server", "--state-dir", str(server.state_dir), "--listen", "127.0.0.1:0"),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert second.stdout == ""
    message = second.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert f"in use by tqhpc server pid {server.process.pid}" in message
    assert server.access.address in message
    # the first server is untouched: same access file, same tasks, still answering
    assert [t.task_id for t in client.tasks()] == ids
    assert client.submit("echo after") == ids[-1] + 1


def test_access_file_and_state_dir_are_private(server) -> None:
    assert stat.S_IMODE(server.access_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.state_dir.stat().st_mode) == 0o700
    text = server.access_file.read_text()
    assert 'address = "127.0.0.1:' in text and "token = " in text


def test_token_survives_a_restart(server) -> None:
    token = server.access.token
    assert server.stop() == 0
    again = start_server(server.state_dir)
    try:
        assert again.access.token == token
    finally:
        again.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_keeps_every_acknowledged_write(server, client: Client, workers, sig: int) -> None:
    ids = [client.submit(f"echo {i}") for i in range(200)]
    workers.start("--concurrency", "2")
    wait_until(lambda: client.task(ids[50]).status.terminal, what="some tasks to finish")
    assert server.stop(sig) == 0
    conn = sqlite3.connect(server.state_dir / "tqhpc.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT task_id, status FROM tasks ORDER BY task_id").fetchall()
    assert [r[0] for r in rows] == ids
    assert all(r[1] in "PACRSF" for r in rows)
    conn.close()
    assert "stopped" in (server.state_dir / "server.log").read_text()
    assert not (server.state_dir / "server.json").exists()
    # the next server takes over the same state and finishes the work
    again = start_server(server.state_dir)
    try:
        with Client(again.access_file) as c:
            workers.start("--access", str(again.access_file), "--concurrency", "2")
            wait_until(
                lambda: all(t.status == Status.SUCCEEDED for t in c.tasks()),
                timeout=60,
                what=lambda: f"all tasks: {sorted({(t.status.value, t.worker_id, t.reason) for t in c.tasks()})}",
            )
    finally:
        workers.stop_all()
        again.stop()


def test_listen_address_in_use_is_a_clear_error(tmp_path, server) -> None:
    port = server.access.address.rsplit(":", 1)[1]
    result = subprocess.run(
        tqhpc_command("server", "--state-dir", str(tmp_path / "other"), "--listen", f"127.0.0.1:{port}"),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"tqhpc: error: cannot listen on 127.0.0.1:{port}: the address is in use or not local"
    )


def test_bad_listen_value(tmp_path) -> None:
    result = subprocess.run(
        tqhpc_command("server", "--state-dir", str(tmp_path / "s"), "--listen", "nowhere"),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "--listen takes HOST:PORT" in result.stderr and "Traceback" not in result.stderr

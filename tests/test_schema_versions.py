"""A state directory written by another tqhpc version: an older database is brought up to date at start, a newer
one is refused in one line (and left as it is) instead of written into."""

from __future__ import annotations

import sqlite3
import subprocess

from conftest import start_server, tqhpc_command
from test_cli import assert_one_line_error, run

from tqhpc.store.schema import MIGRATIONS


def _version(database) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]


def test_a_newer_database_is_refused_in_one_line_and_left_alone(tmp_path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    task_id = run("submit", "echo kept", access=server.access_file).stdout.strip()
    server.stop()
    database = state / "tqhpc.db"
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (newer,))
    result = subprocess.run(
        tqhpc_command("server", "--state-dir", str(state), "--listen", "127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert_one_line_error(
        result,
        f"cannot use the state directory {state}: the database has schema version {newer}, newer than this tqhpc "
        f"knows ({len(MIGRATIONS)})",
        1,
    )
    assert "upgrade tqhpc" in result.stderr
    assert _version(database) == newer
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT command FROM tasks WHERE task_id = ?", (task_id,)).fetchone() == ("echo kept",)


def test_an_older_database_is_migrated_at_start(tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    database = state / "tqhpc.db"
    with sqlite3.connect(database) as conn:  # the first schema, with one task in it
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        conn.executescript(MIGRATIONS[0])
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute("INSERT INTO tasks (command, status, submitted_at) VALUES ('echo old', 'P', 0)")
    server = start_server(state)
    try:
        assert _version(database) == len(MIGRATIONS)
        listed = run("tasks", access=server.access_file)
        assert listed.returncode == 0 and "echo old" in listed.stdout, listed
    finally:
        server.stop()

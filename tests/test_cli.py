"""The `tqhpc` command as a user types it: output, exit codes, and one clear line for every error."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import tqhpc_command, wait_until

from tqhpc import Client, Status


def run(*args: str, access: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    if access is not None:
        full_env["TQHPC_ACCESS"] = str(access)
    return subprocess.run(tqhpc_command(*args), capture_output=True, text=True, timeout=60, env=full_env, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str, code: int = 1) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr


def test_submit_tasks_logs_and_workers(server, workers) -> None:
    first = run("submit", "echo hello; echo oops >&2", access=server.access_file)
    assert first.returncode == 0 and first.stdout.strip().isdigit()
    second = run("submit", "--", "printf", "%s|", "a b", "$HOME", access=server.access_file)
    task_ids = [int(first.stdout), int(second.stdout)]
    workers.start("--concurrency", "1", "--name", "cli-worker")
    with Client(server.access_file) as client:
        wait_until(lambda: all(client.task(t).status == Status.SUCCEEDED for t in task_ids), what="the tasks")
    logs = run("logs", str(task_ids[0]), access=server.access_file)
    assert (logs.stdout, logs.stderr) == ("hello\n", "oops\n")
    # several arguments are a program and its arguments: quoted, not expanded by the shell
    assert run("logs", str(task_ids[1]), access=server.access_file).stdout == "a b|$HOME|"
    table = run("tasks", access=server.access_file)
    assert table.returncode == 0
    assert "S succeeded" in table.stdout and "echo hello; echo oops >&2" in table.stdout
    assert "2 tasks: 2 succeeded" in table.stdout
    listed = json.loads(run("tasks", "--json", "--status", "S", access=server.access_file).stdout)
    assert [t["task_id"] for t in listed] == task_ids and listed[0]["exit_code"] == 0
    assert json.loads(run("tasks", "--json", "--status", "F", access=server.access_file).stdout) == []
    shown = json.loads(run("task", str(task_ids[0]), "--json", access=server.access_file).stdout)
    assert shown["status"] == "S" and shown["attempts"] == 1
    workers_table = run("workers", access=server.access_file).stdout
    assert "cli-worker" in workers_table and "running" in workers_table
    (record,) = json.loads(run("workers", "--json", access=server.access_file).stdout)
    assert record["name"] == "cli-worker"
    changed = run("workers", "set", str(record["worker_id"]), "--concurrency", "3", access=server.access_file)
    assert changed.stdout.strip() == f"worker {record['worker_id']}: concurrency 3, prefetch 1"


def test_logs_follow_waits_for_the_end(server, workers, tmp_path) -> None:
    flag = tmp_path / "go"
    task_id = run("submit", f"echo one; while [ ! -e {flag} ]; do sleep 0.02; done; echo two",
                  access=server.access_file).stdout.strip()  # fmt: skip
    workers.start("--concurrency", "1")
    follower = subprocess.Popen(
        tqhpc_command("logs", "--follow", task_id),
        stdout=subprocess.PIPE,
        env=dict(os.environ, TQHPC_ACCESS=str(server.access_file)),
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"one\n"
    assert follower.poll() is None
    flag.touch()
    assert follower.stdout.read() == b"two\n"
    assert follower.wait(20) == 0


def test_workers_create_and_delete(server) -> None:
    created = run("workers", "create", "--number", "2", "--concurrency", "1", access=server.access_file)
    ids = created.stdout.split()
    assert created.returncode == 0 and len(ids) == 2
    deleted = run("workers", "delete", *ids, access=server.access_file)
    assert deleted.stdout.splitlines() == [f"worker {i} deleted" for i in ids]
    gone = json.loads(run("workers", "--all", "--json", access=server.access_file).stdout)
    assert [(str(w["worker_id"]), w["state"]) for w in gone] == [(i, "deleted") for i in ids]
    assert json.loads(run("workers", "--json", access=server.access_file).stdout) == []  # live ones only


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (("submit", ""), "tqhpc: error: the command is empty", 1),
        (("submit", "--", "echo", *["y" * 50_000] * 3), "tqhpc: error: the command is 150007 bytes", 1),
        (("logs", "999"), "tqhpc: error: no task 999", 1),
        (("task", "999"), "tqhpc: error: no task 999", 1),
        (("workers", "delete", "77"), "tqhpc: error: no worker 77", 1),
        (("workers", "create", "--provider", "nimbus"), "unknown provider 'nimbus'", 1),
        (("tasks", "--status", "Q"), "unknown status letter 'Q'", 2),
        (("logs", "abc"), "'abc' is not a valid integer", 2),
        (("workers", "set", "1"), "give --concurrency, --prefetch or both", 2),
    ],
)
def test_errors_are_one_line(server, args: tuple[str, ...], expected: str, code: int) -> None:
    assert_one_line_error(run(*args, access=server.access_file), expected, code)


def test_no_server(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "access.toml"
    assert_one_line_error(run("tasks", access=missing), f"tqhpc: error: no access file at {missing}")
    dead = tmp_path / "access.toml"
    dead.write_text('address = "127.0.0.1:1"\ntoken = "x"\ntls = false\n')
    dead.chmod(0o600)
    assert_one_line_error(run("tasks", access=dead), "cannot reach the tqhpc server at 127.0.0.1:1")
    broken = tmp_path / "broken.toml"
    broken.write_text("address = \n")
    broken.chmod(0o600)
    assert_one_line_error(run("tasks", access=broken), "is not valid TOML")


def test_bad_config_is_one_line(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[worker]\nconcurency = 3\n")
    result = run("worker", env={"TQHPC_CONFIG": str(config)})
    assert_one_line_error(result, "unknown key 'concurency' in [worker]")
    config.write_text("")
    result = run("worker", env={"TQHPC_CONFIG": str(config), "TQHPC_PREFETCH": "many"})
    assert_one_line_error(result, "prefetch from $TQHPC_PREFETCH must be an integer, not 'many'")


def test_worker_settings_come_from_config_file(server, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[worker]\nconcurrency = 3\nprefetch = 0\nping_interval = 0.2\n")
    process = subprocess.Popen(
        tqhpc_command("worker", "--access", str(server.access_file), "--name", "configured"),
        env=dict(os.environ, TQHPC_CONFIG=str(config)),
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(server.access_file) as client:
            (record,) = wait_until(client.workers, what="the worker to register")
            assert (record.name, record.concurrency, record.prefetch) == ("configured", 3, 0)
    finally:
        process.terminate()
        process.wait(20)


def test_a_worker_with_a_wrong_token_says_so_and_exits(server, tmp_path) -> None:
    forged = tmp_path / "forged.toml"
    forged.write_text(server.access_file.read_text().replace(server.access.token, "guess"))
    forged.chmod(0o600)
    result = run("worker", "--access", str(forged))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "the server refused this worker (UNAUTHENTICATED): wrong token" in result.stderr


def test_every_setting_has_a_flag_and_the_flag_wins() -> None:
    """DESIGN.md: every configuration key can be overridden by a flag (and by a TQHPC_* variable)."""
    import dataclasses

    from tqhpc.cli.processes import server, worker
    from tqhpc.config import ServerSettings, WorkerSettings

    for command, cls in ((server, ServerSettings), (worker, WorkerSettings)):
        flags = {opt for param in command.params for opt in param.opts}
        assert {"--" + f.name.replace("_", "-") for f in dataclasses.fields(cls)} <= flags


def test_flag_over_variable_over_file(tmp_path, monkeypatch) -> None:
    from tqhpc.config import WorkerSettings, load_settings

    config = tmp_path / "config.toml"
    config.write_text("[worker]\nprefetch = 5\ngrace_period = 7\nping_interval = 3\n")
    monkeypatch.setenv("TQHPC_GRACE_PERIOD", "8")
    monkeypatch.setenv("TQHPC_PING_INTERVAL", "4")
    settings = load_settings(WorkerSettings, {"ping_interval": 0.5, "prefetch": None}, path=config)
    assert (settings.prefetch, settings.grace_period, settings.ping_interval) == (5, 8.0, 0.5)


def test_a_negative_flag_is_refused(server) -> None:
    assert_one_line_error(run("worker", "--concurrency", "-2", access=server.access_file),
                          "concurrency from --concurrency must not be negative")  # fmt: skip


def test_a_zero_interval_is_refused_rather_than_spun_on(server, tmp_path) -> None:
    assert_one_line_error(run("worker", "--heartbeat-interval", "0", access=server.access_file),
                          "heartbeat_interval from --heartbeat-interval must be more than 0")  # fmt: skip
    assert_one_line_error(run("server", "--state-dir", str(tmp_path / "s"), "--reap-interval", "0"),
                          "reap_interval from --reap-interval must be more than 0")  # fmt: skip


def test_pool_commands_on_a_server_without_pool_profiles(server) -> None:
    listed = run("pool", "list", access=server.access_file)
    assert listed.returncode == 0 and "no pools yet" in listed.stdout
    assert_one_line_error(run("pool", "resume", "short", access=server.access_file), "the server has no pool profiles")


@pytest.mark.parametrize("count", [3, 700])  # a rich table, and the plain layout of long listings
def test_task_listings_print_commands_as_they_are(server, count: int) -> None:
    with Client(server.access_file) as client:
        client.submit_many([f"echo [bold]{i}[/bold]" for i in range(count)])
    listed = run("tasks", access=server.access_file)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "STATUS"] and "COMMAND" in lines[0]
    rows = lines[1:-1]
    assert len(rows) == count and lines[-1] == f"{count} tasks: {count} pending"
    assert rows[-1].split()[0] == str(count) and f"echo [bold]{count - 1}[/bold]" in rows[-1]
    assert len({row.index("P pending") for row in rows}) == 1, "the status column is aligned"

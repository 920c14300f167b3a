"""The CLI as a careful user types it: a command's own flags stay with it, config is found where it was put, ranges
and statuses read as people write them, and every message says what is true, in one line and in good English."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pexpect
import pytest
from conftest import start_server, tqhpc_command, wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client, Status


def _task(access: Path, task_id: str) -> dict:
    return json.loads(run("task", task_id, "--json", access=access).stdout)


def test_options_after_the_command_belong_to_the_command(server) -> None:
    access = server.access_file
    first = run("submit", "python3", "train.py", "--epochs", "5", "--timeout", "100", access=access)
    assert first.returncode == 0, first.stderr
    task = _task(access, first.stdout.strip())
    assert (task["command"], task["timeout"]) == ("python3 train.py --epochs 5 --timeout 100", 0.0)
    second = run("submit", "--name", "x", "--timeout", "5", "--", "cmd", "--timeout", "9", access=access)
    task = _task(access, second.stdout.strip())
    assert (task["command"], task["timeout"], task["name"]) == ("cmd --timeout 9", 5.0, "x")
    # Before the command, a misspelt option is an error, not the start of the command.
    assert_one_line_error(run("submit", "--nmae", "x", "echo", access=access), "No such option '--nmae'", 2)


def test_submit_help_keeps_each_example_on_its_line() -> None:
    result = run("submit", "--help", env={"COLUMNS": "80"})
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "tqhpc submit --array 1-1000 python sim.py --seed {}" in lines
    assert "tqhpc submit --param a=1,2,3 --param b=x,y 'python fit.py {a} {b}'" in lines


def test_the_server_reads_the_config_of_its_state_directory(tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = state / "config.toml"
    config.write_text("[server]\nworker_timeot = 3\n")
    refused = subprocess.run(
        tqhpc_command("server", "--state-dir", str(state), "--listen", "127.0.0.1:0"),
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert_one_line_error(refused, f"unknown key 'worker_timeot' in [server] of {config}")

    config.write_text('[server]\nworker_timeout = 3\n\n[pools.beside]\npartition = "debug"\n')
    other = tmp_path / "other.toml"
    other.write_text('[pools.named]\npartition = "debug"\n')
    for env, expected in (({}, "beside"), ({"TQHPC_CONFIG": str(other)}, "named")):
        server = start_server(state, env=dict(os.environ, **env))
        try:
            listed = json.loads(run("pool", "list", "--json", access=server.access_file).stdout)
            assert [pool["name"] for pool in listed] == [expected]
        finally:
            server.stop()


def test_a_worker_reads_the_config_beside_its_access_file(server) -> None:
    """TQHPC_ACCESS may name the state directory, as --access may; config.toml there configures the worker."""
    (server.state_dir / "config.toml").write_text("[worker]\nconcurrency = 5\nprefetch = 0\nping_interval = 0.2\n")
    process = subprocess.Popen(
        tqhpc_command("worker", "--name", "beside"),
        env=dict(os.environ, TQHPC_ACCESS=str(server.state_dir)),
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(server.access_file) as client:
            (record,) = wait_until(client.workers, what="the worker to register")
            assert (record.name, record.concurrency, record.prefetch) == ("beside", 5, 0)
    finally:
        process.terminate()
        process.wait(20)


@pytest.mark.parametrize("command", [("worker",), ("server", "--listen", "127.0.0.1:0")])
def test_a_config_file_named_but_missing_is_an_error(tmp_path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "confg.toml"
    result = run(*command, env={"TQHPC_CONFIG": str(missing), "TQHPC_HOME": str(tmp_path / "state")})
    assert_one_line_error(result, f"tqhpc: error: $TQHPC_CONFIG names {missing}, which does not exist")


def test_tqhpc_access_may_name_the_state_directory(server) -> None:
    assert run("submit", "true", access=server.state_dir).stdout.strip() == "1"
    listed = run("tasks", "--json", access=server.state_dir)
    assert listed.returncode == 0 and [t["task_id"] for t in json.loads(listed.stdout)] == [1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("submit", "--after", "5-3", "echo"), "Invalid value for --after: the range '5-3' names no task"),
        (("cancel", "9-2"), "Invalid value for TASK_IDS: the range '9-2' names no task"),
        (("wait", "1,4-1"), "Invalid value for TASK_IDS: the range '4-1' names no task"),
        (("tasks", "--status", "runing"), "unknown status 'runing': give letters (W P A C R S F X) or names"),
    ],
)
def test_ranges_that_name_nothing_are_refused(server, args: tuple[str, ...], expected: str) -> None:
    assert_one_line_error(run(*args, access=server.access_file), expected, 2)
    with Client(server.access_file) as client:
        assert client.tasks() == []


def test_status_names_and_letters(server) -> None:
    access = server.access_file
    ids = [run("submit", "sleep 60", access=access).stdout.strip() for _ in range(2)]

    def listed(status: str) -> list[str]:
        result = run("tasks", "--status", status, "--json", access=access)
        assert result.returncode == 0, result.stderr
        return [str(t["task_id"]) for t in json.loads(result.stdout)]

    assert listed("pending") == listed("running,Pending") == listed("p") == ids
    assert listed("running") == listed("failed, X") == []
    assert run("cancel", "--status", "Pending", access=access).stdout == "cancelled 2 tasks\n"
    assert listed("cancelled") == listed("F,cancelled") == ids


def test_logs_of_a_task_that_has_not_started_say_so(server) -> None:
    task_id = run("submit", "echo hi", access=server.access_file).stdout.strip()
    result = run("logs", task_id, access=server.access_file)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        f"tqhpc: task {task_id} has not started (P pending), so it has no output yet; "
        f"`tqhpc logs --follow {task_id}` waits for it and prints its output as it runs\n"
    )
    run("cancel", task_id, access=server.access_file)
    cancelled = run("logs", task_id, access=server.access_file)
    assert (cancelled.returncode, cancelled.stderr) == (0, f"tqhpc: task {task_id} was cancelled before it started: "
                                                           "it has no output\n")  # fmt: skip


def test_ctrl_c_while_waiting_says_the_tasks_go_on(server) -> None:
    """Under a terminal, as a person presses Ctrl-C: this command stops, the tasks stay queued on the server."""
    env = {"TQHPC_ACCESS": str(server.access_file), "COLUMNS": "100", "TERM": "xterm", "PATH": "/usr/bin:/bin"}
    for args in (("submit", "--wait", "--", "sleep", "30"), ("wait", "1")):
        command = tqhpc_command(*args)
        child = pexpect.spawn(command[0], command[1:], env=env, timeout=30, dimensions=(24, 100))
        child.expect("0/1")  # the progress bar is drawn: waiting has begun
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        screen = re.sub(r"\s+", " ", child.before.decode(errors="replace"))
        assert child.exitstatus == 130, screen
        assert "tqhpc: stopped waiting, but the task goes on: it stays queued or running on the server." in screen
        assert "`tqhpc wait 1` waits again" in screen and "`tqhpc cancel 1` stops them" in screen
        assert "Traceback" not in screen
    with Client(server.access_file) as client:
        assert client.task(1).status == Status.PENDING


def test_an_unknown_dependency_is_named(server) -> None:
    access = server.access_file
    assert_one_line_error(run("submit", "--after", "99999", "echo", access=access),
                          "tqhpc: error: no task 99999 to wait for")  # fmt: skip
    assert "batch" not in run("submit", "--after", "99999", "echo", access=access).stderr
    assert_one_line_error(run("submit", "--array", "1-3", "--after", "99999", "echo", access=access),
                          "tqhpc: error: task 1 of the batch: no task 99999 to wait for")  # fmt: skip


@pytest.mark.parametrize("command", ["workers", "worker"])
def test_deleting_an_unknown_worker_says_only_that(server, command: str) -> None:
    result = run(command, "delete", "999", access=server.access_file)
    assert (result.returncode, result.stderr) == (1, "tqhpc: error: no worker 999\n")


def test_counts_read_as_english(server) -> None:
    access = server.access_file
    submitted = run("submit", "--array", "1-1", "sleep 60", access=access)
    assert re.fullmatch(r"submitted 1 task: \d+\n", submitted.stdout), submitted.stdout
    assert run("tasks", access=access).stdout.splitlines()[-1] == "1 task: 1 pending"
    assert run("cancel", "1", access=access).stdout == "cancelled 1 task\n"
    assert run("retry", "1", access=access).stdout == "1 task back in the queue\n"
    bad = run("worker", env={"TQHPC_PREFETCH": "many"})
    assert_one_line_error(bad, "prefetch from $TQHPC_PREFETCH must be an integer, not 'many'")

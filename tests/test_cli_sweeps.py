"""The sweep CLI as a user types it: sweeps, names, dependencies, wait, cancel, retry, and the progress bar."""

from __future__ import annotations

import json
import re

import pexpect
import pytest
from conftest import tqhpc_command
from test_cli import assert_one_line_error, run

from tqhpc import Client, Status
from tqhpc.expand import ExpandError, from_array, from_lines, from_params, parse_array, parse_params


def test_expansion_rules() -> None:
    assert parse_array("1-3,10,20-30:5") == [1, 2, 3, 10, 20, 25, 30]
    assert [e.command for e in from_array(["echo {}"], [1, 2])] == ["echo 1", "echo 2"]
    assert [e.command for e in from_array(["echo", "x{}"], [7])] == ["echo x7"]
    assert [(e.command, e.array_id) for e in from_lines(["wc -c {}"], ["a b", "c"])] == [("wc -c 'a b'", "0"),
                                                                                         ("wc -c c", "1")]  # fmt: skip
    params = parse_params(["a=1,2", "b=x,y z"])
    assert [e.command for e in from_params(["run {a} {b}"], params)] == [
        "run 1 x", "run 1 'y z'", "run 2 x", "run 2 'y z'"
    ]  # fmt: skip
    for bad, message in [("3-1", "must go up"), ("a-b", "takes ranges"), ("1-5:0", "step")]:
        with pytest.raises(ExpandError, match=message):
            parse_array(bad)
    with pytest.raises(ExpandError, match="NAME=V1"):
        parse_params(["a"])
    with pytest.raises(ExpandError, match="given twice"):
        parse_params(["a=1", "a=2"])
    with pytest.raises(ExpandError, match=r"does not use \{b\}"):
        from_params(["run {a}"], parse_params(["a=1", "b=2"]))


def test_array_param_each_line_name_and_after(server, workers, tmp_path) -> None:
    access = server.access_file
    array = run("submit", "--array", "1-4", "--name", "arr", "--", "sh", "-c", "echo {} $TQHPC_ARRAY_ID", access=access)
    assert array.returncode == 0, array.stderr
    assert re.fullmatch(r"submitted 4 tasks: \d+-\d+\n", array.stdout)
    lines = tmp_path / "inputs.txt"
    lines.write_text("alpha\n\nbeta gamma\n")
    each = run("submit", "--each-line", str(lines), "--name", "lines", "printf %s {}", access=access)
    assert "submitted 2 tasks" in each.stdout
    grid = run("submit", "--param", "a=1,2", "--param", "b=3,4", "--name", "grid", "--retry", "1",
               "echo $(( {a} * {b} ))", access=access)  # fmt: skip
    assert "submitted 4 tasks" in grid.stdout
    first_grid = int(grid.stdout.split(": ")[1].split("-")[0])
    after = run("submit", "--after", f"{first_grid}-{first_grid + 3}", "--slots", "2", "echo last", access=access)
    last = int(after.stdout)
    listed = json.loads(run("tasks", "--name", "grid", "--json", access=access).stdout)
    assert [t["command"] for t in listed] == ["echo $(( 1 * 3 ))", "echo $(( 1 * 4 ))", "echo $(( 2 * 3 ))",
                                              "echo $(( 2 * 4 ))"]  # fmt: skip
    assert {t["retry"] for t in listed} == {1}
    shown = json.loads(run("task", str(last), "--json", access=access).stdout)
    assert shown["status"] == "W" and shown["slots"] == 2 and shown["after"] == list(range(first_grid, first_grid + 4))
    workers.start("--concurrency", "2")
    waited = run("wait", "--name", "grid", access=access)
    assert waited.returncode == 0 and waited.stdout == "4 succeeded\n"
    assert run("wait", str(last), access=access).returncode == 0
    with Client(access) as client:
        arr = client.tasks(name="arr")
        assert [b"".join(c.data for c in client.logs(t.task_id)) for t in arr] == [b"1 1\n", b"2 2\n", b"3 3\n",
                                                                                    b"4 4\n"]  # fmt: skip
        outs = [b"".join(c.data for c in client.logs(t.task_id)) for t in client.tasks(name="lines")]
        assert outs == [b"alpha", b"beta gamma"]
    table = run("tasks", "--name", "arr", "--status", "S", access=access)
    assert table.stdout.count("succeeded") == 4 + 1  # four rows and the count line
    assert "arr" in table.stdout


def test_wait_cancel_and_retry_from_the_cli(server, workers, tmp_path) -> None:
    access = server.access_file
    out = run("submit", "--array", "1-3", "--name", "doomed", "--", "sh", "-c", "exit {}", access=access)
    workers.start("--concurrency", "3")
    waited = run("wait", "--name", "doomed", "--timeout", "60", access=access)
    assert waited.returncode == 1
    assert waited.stdout == "3 failed\n" and "not succeeded:" in waited.stderr
    assert run("retry", "--failed", "--name", "doomed", access=access).stdout == "3 tasks back in the queue\n"
    assert run("wait", "--name", "doomed", access=access).returncode == 1
    with Client(access) as client:
        assert {t.attempts for t in client.tasks(name="doomed")} == {2}
    slow = run("submit", "--array", "1-2", "--name", "slow", "sleep 60", access=access)
    assert slow.returncode == 0, out
    assert run("cancel", "--name", "slow", access=access).stdout == "cancelled 2 tasks\n"
    assert run("wait", "--name", "slow", "--timeout", "30", access=access).stdout == "2 cancelled\n"
    sleepy = run("submit", "sleep 30", access=access).stdout.strip()
    timed = run("wait", sleepy, "--timeout", "0.5", access=access)
    assert timed.returncode == 2 and "timed out: 1 of 1 tasks still unfinished" in timed.stderr
    run("cancel", sleepy, access=access)
    hang = run("submit", "--after", "1", "sleep 1", access=access)  # task 1 failed: cancelled at once
    assert run("wait", hang.stdout.strip(), access=access).stdout == "1 cancelled\n"


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (("submit", "--array", "5-1", "echo"), "--array range '5-1' must go up", 2),
        (("submit", "--array", "1-2", "--param", "a=1", "echo {a}"), "use one of --array, --each-line and --param", 2),
        (("submit", "--param", "a=1,2", "echo"), "the command does not use {a}", 2),
        (("submit", "--each-line", "/nonexistent/x", "echo {}"), "cannot read /nonexistent/x", 2),
        (("submit", "--after", "x", "echo"), "task ids look like", 2),
        (("submit", "--after", "99999", "echo"), "no task 99999 to wait for", 1),
        (("submit", "--slots", "0", "echo"), "0 is not in the range", 2),
        (("cancel",), "name the tasks", 2),
        (("retry",), "name the tasks: TASK_IDS, --name or --failed", 2),
        (("wait", "424242"), "no task 424242", 1),
        (("wait", "--name", "nobody"), "no task is named 'nobody'", 2),
    ],
)
def test_sweep_errors_are_one_line(server, args: tuple[str, ...], expected: str, code: int) -> None:
    assert_one_line_error(run(*args, access=server.access_file), expected, code)


def test_submit_wait_draws_a_progress_bar_on_a_terminal(server, workers) -> None:
    """As a person sees it: under a pseudo-terminal the bar advances and ends at 100%."""
    workers.start("--concurrency", "2")
    command = tqhpc_command("submit", "--array", "1-12", "--wait", "--", "sleep", "0.{}")
    child = pexpect.spawn(command[0], command[1:], env={"TQHPC_ACCESS": str(server.access_file), "COLUMNS": "100",
                          "TERM": "xterm", "PATH": "/usr/bin:/bin"}, timeout=120, dimensions=(24, 100))  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before.decode(errors="replace")
    assert child.exitstatus == 0, screen
    percentages = [int(p) for p in re.findall(r"(\d+)%", screen)]
    assert percentages[-1] == 100, screen
    assert any(0 < p < 100 for p in percentages), screen  # seen part-way, not only at the end
    assert percentages == sorted(percentages), screen  # it only moves forward
    assert "12/12" in screen and "12 succeeded" in screen


def test_no_bar_when_not_a_terminal(server, workers) -> None:
    workers.start("--concurrency", "2")
    result = run("submit", "--array", "1-3", "--wait", "true", access=server.access_file)
    assert result.returncode == 0
    assert result.stderr == ""  # no bar, not even its last frame, where nobody is watching
    first, last = re.fullmatch(r"submitted 3 tasks: (\d+)-(\d+)\n3 succeeded\n", result.stdout).groups()
    with Client(server.access_file) as client:
        tasks = client.tasks()
    assert [t.task_id for t in tasks] == list(range(int(first), int(last) + 1))
    assert {t.status for t in tasks} == {Status.SUCCEEDED}

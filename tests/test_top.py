"""`tqhpc top` as a person sees it: a real server and worker, the view running in a tmux pane of a fixed size, its
screen read with capture-pane while tasks are submitted, and the terminal checked after leaving (q, Ctrl-C,
SIGTERM): the shell's prompt back, typing echoed, `stty -a` showing icanon and echo.

The pane runs dash, which leaves the terminal's modes as it finds them (bash's readline would set its own before
each command, hiding a terminal left in cbreak mode).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import psutil
import pytest
from conftest import ServerProcess, start_server, tqhpc_command, wait_until

from tqhpc import Client
from tqhpc.access import Access, new_token, prepare_state_dir, write_access

TMUX = shutil.which("tmux")
WIDTH, HEIGHT = 110, 32
PROMPT = "top-test$ "


class Pane:
    """One tmux session with one pane running `sh`, on a tmux server of its own (its own socket)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"tqhpc-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        shell = f"env -i {exports} PS1={shlex.quote(PROMPT)} /bin/sh"  # nothing of ours: COLUMNS would win
        self._tmux("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), shell)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def type(self, text: str, enter: bool = True) -> None:
        self._tmux("send-keys", "-l", text)
        if enter:
            self._tmux("send-keys", "Enter")

    def key(self, name: str) -> None:
        self._tmux("send-keys", name)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def shows(self, *texts: str, timeout: float = 20.0, without: str = "") -> str:
        """Wait until every text is on the screen at once (and `without` is not); the screen then."""
        found: list[str] = []

        def present() -> bool:
            found[:] = [self.screen()]
            return all(text in found[0] for text in texts) and not (without and without in found[0])

        wait_until(present, timeout, interval=0.1, what=lambda: f"{texts} on the screen:\n{found[0] if found else ''}")
        return found[0]

    def shell_pid(self) -> int:
        return int(self._tmux("display-message", "-p", "#{pane_pid}").strip())

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10, check=False)


@pytest.fixture
def pane(server: ServerProcess) -> Iterator[Pane]:
    if TMUX is None:
        pytest.skip(
            "tmux is not installed (scripts/test.sh installs it on Debian as root): the live view is tested in it"
        )
    env = {"TQHPC_ACCESS": str(server.access_file), "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    env["TERM"] = "screen"
    opened = Pane(env)
    yield opened
    opened.close()


def _start_top(pane: Pane, *args: str) -> None:
    pane.shows(PROMPT.rstrip())
    pane.type(shlex.join([sys.executable, "-m", "tqhpc", "top", *args]))
    pane.shows("tqhpc top", "q or Ctrl-C to leave")


def _assert_terminal_sane(pane: Pane, check: int = 1) -> None:
    """Back at the prompt, out of the view's screen, typing echoed and run, and the modes a shell expects; `check`
    tells this check's output from an earlier one's on the same screen."""
    pane.shows(PROMPT.rstrip())
    pane.type(f"stty -a; echo typed-$((40 + {check}))")
    screen = pane.shows(f"typed-{40 + check}")
    assert f"stty -a; echo typed-$((40 + {check}))" in screen  # what was typed was echoed
    assert "LATEST FAILURES" not in screen  # the view's alternate screen is gone
    assert "Traceback" not in screen
    modes = screen.split()
    assert "icanon" in modes and "echo" in modes and "isig" in modes, screen


def test_top_shows_counts_workers_and_failures_live_and_q_leaves(pane: Pane, client: Client, workers) -> None:
    workers.start("--concurrency", "2", "--name", "top-worker")
    _start_top(pane)
    screen = pane.shows("WORKERS (1)", "top-worker")
    assert "TASKS 0" in screen

    client.submit_many([{"command": "true", "name": "quick"}] * 6)
    pane.shows("TASKS 6", "succeeded 6", "6/min (last minute)")

    bad = client.submit("echo 'reading input.csv' >&2; echo 'ValueError: bad row 17' >&2; exit 3", name="broken")
    screen = pane.shows("TASKS 7", "failed 1", "exit_code 3", "ValueError: bad row 17")
    failure_row = next(line for line in screen.splitlines() if "ValueError: bad row 17" in line)
    assert failure_row.split()[0] == str(bad) and "broken" in failure_row
    worker_row = next(line for line in screen.splitlines() if "top-worker" in line)
    assert "running" in worker_row.split()

    running = client.submit("sleep 30", name="slow")
    screen = pane.shows("running 1")
    worker_row = next(line for line in screen.splitlines() if "top-worker" in line)
    assert worker_row.split()[-2:] == ["1", "1"]  # RUNNING and HELD
    client.cancel([running])
    pane.shows("cancelled 1", "running 0")  # shown once some task has that status

    pane.type("q", enter=False)
    _assert_terminal_sane(pane)


def test_top_follows_one_sweep_by_name(pane: Pane, client: Client) -> None:
    client.submit_many([{"command": "true", "name": "mine"}] * 3)
    client.submit_many([{"command": "true", "name": "other"}] * 5)
    _start_top(pane, "--name", "mine")
    screen = pane.shows("sweep mine", "TASKS 3", "pending 3")
    assert "TASKS 8" not in screen
    pane.type("q", enter=False)
    _assert_terminal_sane(pane)


def test_ctrl_c_leaves_top_without_a_traceback(pane: Pane, client: Client) -> None:
    _start_top(pane)
    pane.shows("TASKS 0")
    pane.key("C-c")
    _assert_terminal_sane(pane)
    assert "interrupted" not in pane.screen()


def test_ctrl_z_gives_the_terminal_back_and_fg_brings_the_view_again(pane: Pane, client: Client) -> None:
    _start_top(pane)
    pane.shows("TASKS 0")
    pane.key("C-z")
    pane.shows("Stopped")
    _assert_terminal_sane(pane, check=1)
    client.submit("true")
    pane.type("fg")
    pane.shows("q or Ctrl-C to leave", "TASKS 1")
    pane.type("q", enter=False)
    _assert_terminal_sane(pane, check=2)


def test_sigterm_restores_the_terminal(pane: Pane, client: Client) -> None:
    _start_top(pane)
    pane.shows("TASKS 0")
    [top] = [p for p in psutil.Process(pane.shell_pid()).children() if "top" in p.cmdline()]
    top.send_signal(signal.SIGTERM)
    top.wait(10)
    pane.shows(PROMPT.rstrip())
    pane.type("echo status-$?")
    pane.shows(f"status-{128 + signal.SIGTERM}")
    _assert_terminal_sane(pane)


def test_an_unreachable_server_is_shown_and_found_again(pane: Pane, server: ServerProcess, client: Client) -> None:
    client.submit("true")
    _start_top(pane)
    pane.shows("TASKS 1")
    server.stop()
    screen = pane.shows(
        "server unreachable: cannot reach the tqhpc server", "asking again at each refresh; what follows"
    )
    assert "Traceback" not in screen
    restarted = start_server(server.state_dir)
    try:
        pane.shows("TASKS 1", without="asking again")
        pane.type("q", enter=False)
        _assert_terminal_sane(pane)
    finally:
        restarted.stop()


def _top_through_a_pipe(access: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQHPC_ACCESS=str(access))
    return subprocess.run(tqhpc_command("top"), capture_output=True, text=True, timeout=30, env=env, check=False)


def test_top_through_a_pipe_prints_one_snapshot(server: ServerProcess, client: Client) -> None:
    client.submit_many([{"command": "true", "name": "piped"}] * 4)
    done = _top_through_a_pipe(server.access_file)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"tqhpc top  {server.access.address}")
    assert "q or Ctrl-C" not in done.stdout
    assert lines[1] == "TASKS 4  pending 4  running 0  succeeded 0  failed 0"
    assert all(line == line.rstrip() for line in lines)


def test_top_through_a_pipe_without_a_server_is_one_line_error(server: ServerProcess) -> None:
    server.stop()
    done = _top_through_a_pipe(server.access_file)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("tqhpc: error: cannot reach the tqhpc server at ")
    assert len(done.stderr.splitlines()) == 1


def test_top_against_a_server_without_overviews_says_to_upgrade(tmp_path: Path) -> None:
    """A gRPC server that has no GetOverview, as a tqhpc from before it answers: UNIMPLEMENTED, said in words (in
    plaintext, as the access file says)."""
    older = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = older.add_insecure_port("127.0.0.1:0")
    older.start()
    try:
        state = prepare_state_dir(tmp_path / "older")
        access = write_access(state, Access(address=f"127.0.0.1:{port}", token=new_token(), certificate=None))
        done = _top_through_a_pipe(access)
    finally:
        older.stop(None)
    assert done.returncode == 1
    assert done.stderr == (
        f"tqhpc: error: the server at 127.0.0.1:{port} has no overview to give: it runs an older tqhpc; upgrade it "
        "and restart it\n"
    )


def test_top_without_an_access_file_says_so_in_the_view(pane: Pane, tmp_path: Path) -> None:
    _start_top(pane, "--access", str(tmp_path / "nowhere"))
    pane.shows("cannot read the server's access file", "asking again at each refresh")
    pane.type("q", enter=False)
    _assert_terminal_sane(pane)

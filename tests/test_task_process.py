"""What running one task costs the worker beyond the task itself: no thread per task, no sampling timer for a task
that ends before its first sample, no file descriptor left behind. Real processes in a real event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

from tqhpc.records import ResourceUsage
from tqhpc.worker.process import FIRST_SAMPLE_SECONDS, Limits, TaskProcess


class _Output:
    """A task's output as the shipper would get it, and the threads alive when its first bytes came."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.threads_at_first_output: set[threading.Thread] | None = None

    async def __call__(self, log_type: str, data: bytes) -> None:
        if self.threads_at_first_output is None:
            self.threads_at_first_output = set(threading.enumerate())
        self.data[log_type] = self.data.get(log_type, b"") + data


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_running_task_holds_no_thread_of_the_worker(tmp_path: Path, monkeypatch) -> None:
    """The worker learns that a task ended from a pidfd in its event loop, not from a thread blocked per task, and
    closes it. Where pidfds do not exist (no `os.pidfd_open`), a thread waits instead, with the same result."""
    before = set(threading.enumerate())
    fds_before = _open_fds()
    output = _Output()
    outcome = await TaskProcess("echo started; sleep 0.2", tmp_path, dict(os.environ), output).run()
    assert outcome.exit_code == 0 and outcome.failure == ""
    assert output.data == {"O": b"started\n"}
    assert output.threads_at_first_output is not None
    assert output.threads_at_first_output - before == set(), "a thread was started for the task"
    assert outcome.usage is not None and outcome.usage.wall_time >= 0.2
    assert _open_fds() <= fds_before, "a file descriptor of the task was left open"

    monkeypatch.delattr(os, "pidfd_open")
    output = _Output()
    outcome = await TaskProcess("echo out; sleep 0.1; exit 4", tmp_path, dict(os.environ), output).run()
    assert outcome.exit_code == 4
    assert output.data == {"O": b"out\n"}
    assert outcome.usage is not None and outcome.usage.wall_time >= 0.1


async def test_the_watcher_starts_only_when_a_sample_or_the_timeout_is_due(tmp_path: Path) -> None:
    """A task over before its first sample is due costs the worker its two output readers and no sampling task;
    one that runs longer is still sampled and its first sample reported; a timeout shorter than the first sample
    still kills on time."""
    loop = asyncio.get_running_loop()
    created: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro, **kwargs) -> asyncio.Task:
        created.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        outcome = await TaskProcess("exit 3", tmp_path, dict(os.environ), _Output()).run()
    finally:
        loop.set_task_factory(None)
    assert outcome.exit_code == 3
    assert created == ["TaskProcess._pump", "TaskProcess._pump"], created
    assert outcome.usage is not None and outcome.usage.samples == 0

    first: list[ResourceUsage] = []

    async def on_first_sample(usage: ResourceUsage) -> None:
        first.append(usage)

    command = f"sleep {FIRST_SAMPLE_SECONDS * 4}"
    outcome = await TaskProcess(command, tmp_path, dict(os.environ), _Output(), on_first_sample=on_first_sample).run()
    assert outcome.exit_code == 0
    assert len(first) == 1 and first[0].samples >= 1, "the first sample of a task that outlived it was not reported"

    started = loop.time()
    limits = Limits(timeout=FIRST_SAMPLE_SECONDS / 5)
    outcome = await TaskProcess("sleep 5", tmp_path, dict(os.environ), _Output(), limits=limits).run()
    assert outcome.failure == "timeout", outcome
    assert loop.time() - started < 2.0


async def test_a_task_gets_only_its_three_streams_and_leaves_the_worker_where_it_was(tmp_path: Path) -> None:
    """The task starts in its own directory with stdin, stdout and stderr only (no descriptor of the worker or of
    other tasks, which would keep their pipes open); the worker's own directory is the same afterwards."""
    here = os.getcwd()
    workdir = tmp_path / "task dir"
    workdir.mkdir()
    output = _Output()
    outcome = await TaskProcess('pwd; ls /proc/$$/fd | sort -n | tr "\\n" " "', workdir, dict(os.environ), output).run()
    assert outcome.exit_code == 0
    assert output.data["O"] == f"{workdir}\n0 1 2 ".encode()
    assert os.getcwd() == here


_LATE_DESCRIPTOR = """
import asyncio, os, sys
from pathlib import Path
from tqhpc.worker.process import TaskProcess

async def main() -> None:
    seen = {}

    async def output(log_type: str, data: bytes) -> None:
        seen[log_type] = seen.get(log_type, b"") + data

    workdir = Path(sys.argv[1])
    assert (await TaskProcess("true", workdir, dict(os.environ), output).run()).exit_code == 0
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as a C library may open one, long after the first task
    # The task's descriptors are listed from here, while it sleeps: a listing by the task itself would show the
    # pipes of its own shell pipeline.
    running = asyncio.ensure_future(TaskProcess("echo $$; exec sleep 2", workdir, dict(os.environ), output).run())
    while not seen.get("O", b"").endswith(b"\\n"):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the shell has become sleep
    pid = int(seen["O"])
    fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    await running
    sys.stdout.write(" ".join(map(str, fds)))

asyncio.run(main())
"""


def test_a_descriptor_left_open_to_inheritance_after_earlier_tasks_stays_out_of_later_ones(tmp_path: Path) -> None:
    """The next task must still get its three streams only (a pipe end held by a task keeps its reader waiting).
    Run in a process of its own, as a worker is: threads left over by other tests in this one could open such a
    descriptor at any moment."""
    done = subprocess.run(
        [sys.executable, "-c", _LATE_DESCRIPTOR, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0 1 2"


async def test_a_directory_gone_before_the_start_fails_as_cwd_and_leaks_nothing(tmp_path: Path) -> None:
    here, fds_before = os.getcwd(), _open_fds()
    outcome = await TaskProcess("true", tmp_path / "gone", dict(os.environ), _Output()).run()
    assert (outcome.exit_code, outcome.failure) == (None, "cwd")
    assert "does not exist" in outcome.error
    assert os.getcwd() == here and _open_fds() == fds_before

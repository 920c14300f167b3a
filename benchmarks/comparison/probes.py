"""Idle-worker dispatch, measured the same way for every queue: one task at a time, from submit to the moment the
task's first line runs and to the moment the client sees it finished.

The task's first line writes the wall clock to a file (`date +%s.%N > FILE`, the cheapest clock a POSIX `sh` has:
dash has no builtin one), so the first figure needs no help from the queue. The second is what a user waiting for
the result sees: the harness polls the queue's own client every `FINISH_POLL_SECONDS` once the task has started, so
it is quantised by that much for every queue alike.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

Handle = TypeVar("Handle")

CLOCK_POLL_SECONDS = 0.001
"""Looking for the clock file costs the queue nothing (a stat in this process), so it can be tight."""
FINISH_POLL_SECONDS = 0.005
"""Asking the queue whether the task is finished costs the queue a request each time: not tighter than this."""
IDLE_GAP_SECONDS = (0.05, 1.05)
"""The pause after each task, drawn uniformly from this range: the next task finds the worker idle again, and
arrives at a random moment of a polling worker's cycle (a 1 s heartbeat), as a user's submission does."""


def clock_command(path: Path) -> str:
    """The shell command whose first line writes the clock to `path`."""
    return f"date +%s.%N > {path}"


@dataclass
class ProbeRun:
    """The samples of one series, in seconds; `missed` says why it stopped early, if it did."""

    started: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    missed: str = ""


@dataclass
class Queue(Generic[Handle]):
    """How to submit a shell command to a queue, whether it is finished, and whether it succeeded."""

    submit: Callable[[str], Handle]
    finished: Callable[[Handle], bool]
    succeeded: Callable[[Handle], bool]
    cancel: Callable[[Handle], None] = lambda handle: None


def measure(queue: Queue[Handle], clock_dir: Path, count: int, timeout: float = 30.0) -> ProbeRun:
    """Submit `count` clock tasks one after another; stop early (saying why) if one does not start or finish in time."""
    clock_dir.mkdir(parents=True, exist_ok=True)
    run = ProbeRun()
    for index in range(count):
        path = clock_dir / f"clock-{index}"
        command = clock_command(path)
        submitted = time.time()
        handle = queue.submit(command)
        clock = _wait_for_clock(path, submitted + timeout)
        if clock is None:
            queue.cancel(handle)
            run.missed = f"task {index + 1} did not start within {timeout:g} s"
            break
        while not queue.finished(handle):
            if time.time() > submitted + timeout:
                run.missed = f"task {index + 1} did not finish within {timeout:g} s"
                return run
            time.sleep(FINISH_POLL_SECONDS)
        done = time.time()
        if not queue.succeeded(handle):
            run.missed = f"task {index + 1} failed"
            break
        run.started.append(clock - submitted)
        run.finished.append(done - submitted)
        time.sleep(random.uniform(*IDLE_GAP_SECONDS))
    return run


def _wait_for_clock(path: Path, deadline: float) -> float | None:
    """The clock the task wrote, once the whole line is there; None past the deadline."""
    while time.time() < deadline:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n"):
            return float(text)
        time.sleep(CLOCK_POLL_SECONDS)
    return None

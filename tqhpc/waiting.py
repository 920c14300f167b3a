"""Wait for many tasks with one small status poll, and show a progress bar when a person is watching."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .status import Status

TERMINAL_LETTERS = frozenset(s.value for s in Status if s.terminal)
FIRST_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 1.0


class WaitTimeout(TimeoutError):
    """The tasks were not all finished when the timeout ran out; `letters` is their last known status."""

    def __init__(self, message: str, letters: str) -> None:
        super().__init__(message)
        self.letters = letters


def summary(letters: str) -> str:
    """'3 succeeded, 1 failed' from status letters, in the status model's order."""
    counts = Counter(letters)
    return ", ".join(f"{counts[s.value]} {s.label}" for s in Status if counts[s.value]) or "no tasks"


def wait_letters(
    poll: Callable[[Sequence[int]], str],
    ids: Sequence[int],
    *,
    timeout: float | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> str:
    """Poll until every task is terminal; return their final letters. The bar is drawn only on a terminal."""
    console = console or Console(stderr=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = FIRST_POLL_SECONDS
    bar = None
    if progress and console.is_terminal and ids:
        bar = Progress(
            TextColumn("[bold]tasks"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            refresh_per_second=4,
        )
        bar.start()
        bar_task = bar.add_task("", total=len(ids))
    try:
        while True:
            letters = poll(ids)
            done = sum(1 for letter in letters if letter in TERMINAL_LETTERS or letter == "?")
            if bar is not None:
                bar.update(bar_task, completed=done, description=summary(letters))
            if done == len(ids):
                if bar is not None:
                    bar.refresh()
                return letters
            if deadline is not None and time.monotonic() >= deadline:
                left = f"{len(ids) - done} of {len(ids)} tasks still unfinished ({summary(letters)})"
                raise WaitTimeout(left, letters)
            pause = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            time.sleep(pause)
            interval = min(MAX_POLL_SECONDS, interval * 1.5)
    finally:
        if bar is not None:
            bar.stop()

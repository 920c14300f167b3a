"""The task status letters and the one rule book for moving between them.

Every status write in the store goes through `check_worker_transition` or the server-side helpers here, so the
rules live in one place (scitq's lesson) and the errors users see name the task, both letters and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from .errors import InvalidArgument


class Status(StrEnum):
    WAITING = "W"
    PENDING = "P"
    ASSIGNED = "A"
    ACCEPTED = "C"
    RUNNING = "R"
    SUCCEEDED = "S"
    FAILED = "F"
    CANCELLED = "X"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


_LABELS = {
    Status.WAITING: "waiting",
    Status.PENDING: "pending",
    Status.ASSIGNED: "assigned",
    Status.ACCEPTED: "accepted",
    Status.RUNNING: "running",
    Status.SUCCEEDED: "succeeded",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
}

TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
HELD = frozenset({Status.ASSIGNED, Status.ACCEPTED, Status.RUNNING})
"""The statuses in which a task belongs to a worker: they count against its concurrency + prefetch."""

WORKER_REPORTABLE = frozenset({Status.ACCEPTED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED})

_WORKER_MOVES: dict[Status, frozenset[Status]] = {
    Status.ASSIGNED: frozenset({Status.ACCEPTED, Status.RUNNING, Status.FAILED}),
    # A worker may skip R: scitq's own reports A -> C -> S, its run starting and ending between two reports.
    Status.ACCEPTED: frozenset({Status.RUNNING, Status.SUCCEEDED, Status.FAILED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED}),
}


class TransitionError(InvalidArgument):
    """A status change the rules forbid; the message is meant for the user as it is."""


def parse_status(letter: str) -> Status:
    """The Status for one letter, or a TransitionError that lists the letters there are."""
    try:
        return Status(letter)
    except ValueError:
        known = " ".join(s.value for s in Status)
        raise TransitionError(f"unknown status letter {letter!r} (the letters are {known})") from None


_BY_LABEL = {label: status for status, label in _LABELS.items()}


def parse_status_filter(text: str) -> frozenset[Status]:
    """The set of statuses a filter names; empty means every status.

    People type what they read in `tqhpc tasks`: letters ("SF", "f"), names ("running", "Failed"), or a mix in a
    comma- or space-separated list ("failed,X"). No name is made of status letters only, so both read the same way.
    """
    statuses: set[Status] = set()
    for item in text.replace(",", " ").split():
        by_name = _BY_LABEL.get(item.lower())
        if by_name is not None:
            statuses.add(by_name)
            continue
        try:
            statuses.update(Status(letter.upper()) for letter in item)
        except ValueError:
            raise TransitionError(_unknown_filter(item)) from None
    return frozenset(statuses)


def _unknown_filter(item: str) -> str:
    letters = " ".join(s.value for s in Status)
    names = ", ".join(_LABELS.values())
    kind = "status letter" if len(item) == 1 else "status"
    return f"unknown {kind} {item!r}: give letters ({letters}) or names ({names}), comma-separated"


def status_letters(text: str) -> str:
    """The canonical letters of a filter ("running,F" -> "RF"), in the model's order, as every server takes them."""
    chosen = parse_status_filter(text)
    return "".join(s.value for s in Status if s in chosen)


def check_worker_transition(task_id: int, current: Status, new: Status) -> bool:
    """Whether a worker's report changes anything: False for a repeat of the current status (a retried RPC).

    Raises TransitionError for a letter workers may not set or a move the status model does not have.
    """
    if new not in WORKER_REPORTABLE:
        raise TransitionError(
            f"task {task_id}: status {new.value} ({new.label}) is set by the server; workers report C, R, S or F"
        )
    if new == current:
        return False
    allowed = _WORKER_MOVES.get(current, frozenset())
    if new not in allowed:
        if allowed:
            hint = "from there a worker may report " + " or ".join(sorted(s.value for s in allowed))
        else:
            hint = "a worker may not change it"
        raise TransitionError(
            f"task {task_id} is {current.value} ({current.label}); it cannot become {new.value} ({new.label}): {hint}"
        )
    return True


# --- the server's own moves (dependencies, retries, cancel) -----------------------------------------------------

CANCELLABLE = frozenset({Status.WAITING, Status.PENDING, Status.ASSIGNED, Status.ACCEPTED, Status.RUNNING})
"""Every status that is not terminal: cancelling moves it to X at once (a held task is also killed on its worker)."""
RETRYABLE = frozenset({Status.FAILED, Status.CANCELLED})
"""What `RetryTasks` may send back to the queue; a succeeded task is never re-run behind the user's back."""


def after_failed_attempt(retry: int, failure_retries: int) -> Status:
    """A failed attempt goes back to P while re-runs are left (`retry` of them in all), else the task is F."""
    return Status.PENDING if failure_retries < retry else Status.FAILED


def from_dependencies(dependencies: Iterable[Status]) -> Status:
    """The status a task with these dependencies should have: X if one failed or was cancelled (it can never run),
    P once all succeeded, else W."""
    waiting = False
    for status in dependencies:
        if status in (Status.FAILED, Status.CANCELLED):
            return Status.CANCELLED
        if status != Status.SUCCEEDED:
            waiting = True
    return Status.WAITING if waiting else Status.PENDING

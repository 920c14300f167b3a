"""Issue 5's task operations: batch insert with dependencies, cancel, retry, and what a finished task unblocks.

Like tasks.py, each is a function of a connection run inside the writer's transaction (see database.py), so a
batch of ten thousand tasks and their dependency rows land in one commit, and a cancel cannot interleave with a
worker's report. Every status these functions write comes from the rules in `tqhpc.status`.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from ..errors import InvalidArgument
from ..plural import plural
from ..records import TaskInfo
from ..status import CANCELLABLE, HELD, RETRYABLE, Status, after_failed_attempt, from_dependencies

CHUNK = 500
"""Ids per `IN (...)` list: well under SQLite's limit on bound parameters."""
SCAN_LIMIT = 2000
"""How many pending tasks one assignment looks at for ones that fit: a ping never scans a huge queue."""


@dataclass(frozen=True)
class NewTask:
    """One task to insert, already validated by the server."""

    command: str
    container: str = ""
    name: str = ""
    retry: int = 0
    after: tuple[int, ...] = ()
    after_index: tuple[int, ...] = ()  # earlier tasks of the same batch, by position
    slots: int = 1
    array_id: str = ""
    timeout: float = 0.0  # issue 3: wall-clock limit in seconds, 0: none
    memory_limit: int = 0  # issue 3: RSS ceiling in bytes, 0: none
    time_request: float = 0.0  # issue 4: declared run time in seconds, 0: not declared
    cwd: str = ""  # the absolute directory the task runs in; "": a scratch directory per attempt


@dataclass
class Changes:
    """What an operation did, for the server's follow-up work (log rotation, waking log followers)."""

    ids: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)  # back to P for a new attempt: their logs are rotated
    finished: list[int] = field(default_factory=list)  # became terminal: their followers are woken


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def rows_by_id(conn: sqlite3.Connection, columns: str, task_ids: Iterable[int]) -> Iterator[sqlite3.Row]:
    """`columns` of each existing task among `task_ids` (unknown ids yield nothing), in `IN` lists of CHUNK ids."""
    for chunk in _chunks(sorted(set(task_ids))):
        marks = ",".join("?" * len(chunk))
        yield from conn.execute(f"SELECT {columns} FROM tasks WHERE task_id IN ({marks})", chunk)


def statuses_of(conn: sqlite3.Connection, task_ids: Iterable[int]) -> dict[int, tuple[Status, int | None]]:
    """Status and exit code of each existing task among `task_ids`; unknown ids are left out."""
    return {
        task_id: (Status(status), exit_code)
        for task_id, status, exit_code in rows_by_id(conn, "task_id, status, exit_code", task_ids)
    }


# --- submit ----------------------------------------------------------------------------------------------------


def insert_batch(conn: sqlite3.Connection, specs: Sequence[NewTask], now: float, *, batch: bool = True) -> list[int]:
    """Insert tasks in one go and return their ids in order.

    The ids are chosen here, consecutive after the largest id ever used (what AUTOINCREMENT would pick), and
    written explicitly, so the order is certain rather than assumed. A dependency may name an existing task or an
    earlier task of the batch; anything else (unknown id, itself, a later task of the batch) is refused, which also
    makes cycles impossible. Errors name the task's place in the batch, unless it came alone (`batch=False`).
    """
    if not specs:
        return []
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0), "
        "COALESCE((SELECT MAX(task_id) FROM tasks), 0))"
    ).fetchone()
    first = int(row[0]) + 1
    external = statuses_of(conn, {dep for spec in specs for dep in spec.after})
    rows = []
    deps = []
    initial: list[Status] = []
    for index, spec in enumerate(specs):
        task_id = first + index
        status, reason = Status.PENDING, ""
        if spec.after or spec.after_index:
            dep_status: dict[int, Status] = {}
            for dep in spec.after:
                if dep not in external:
                    where = f"task {index + 1} of the batch: " if batch else ""
                    raise InvalidArgument(f"{where}no task {dep} to wait for")
                dep_status[dep] = external[dep][0]
            for position in spec.after_index:
                if position >= index:
                    what = "itself" if position == index else f"task {position + 1} of the batch, which comes later"
                    raise InvalidArgument(
                        f"task {index + 1} of the batch depends on {what}: a task may only wait for earlier ones"
                    )
                dep_status[first + position] = initial[position]
            status = from_dependencies(dep_status.values())
            if status == Status.CANCELLED:
                culprit = next(d for d, s in dep_status.items() if s in (Status.FAILED, Status.CANCELLED))
                reason = _dependency_reason(culprit, dep_status[culprit])
            elif status == Status.WAITING:
                reason = "waiting for " + _id_list(sorted(d for d, s in dep_status.items() if s != Status.SUCCEEDED))
            deps.extend((task_id, dep) for dep in dep_status)
        initial.append(status)
        rows.append(
            (
                task_id, spec.command, spec.container, status.value, now, reason, spec.name, spec.retry, spec.slots,
                spec.array_id, now if status == Status.CANCELLED else None, spec.timeout, spec.memory_limit,
                spec.time_request, spec.cwd,
            )
        )  # fmt: skip
    conn.executemany(
        "INSERT INTO tasks (task_id, command, container, status, submitted_at, reason, name, retry, slots, array_id,"
        " ended_at, timeout, memory_limit, time_request, cwd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    if deps:
        conn.executemany("INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (?, ?)", deps)
    return list(range(first, first + len(specs)))


def _dependency_reason(dep: int, status: Status) -> str:
    return f"dependency {dep} {'failed' if status == Status.FAILED else 'was cancelled'}"


def _id_list(ids: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return (
        f"task {shown}"
        if len(ids) == 1
        else f"tasks {shown}" + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
    )


# --- what a finished task unblocks -----------------------------------------------------------------------------


def settle_dependents(conn: sqlite3.Connection, task_id: int, status: Status, now: float) -> list[int]:
    """After `task_id` became terminal: waiting dependents whose dependencies all succeeded go to P; if it failed
    or was cancelled, its waiting dependents are cancelled with that reason, and theirs in turn. Return the ids
    that became terminal."""
    cancelled: list[int] = []
    todo = [(task_id, status)]
    while todo:
        done_id, done_status = todo.pop()
        waiting = [
            row[0]
            for row in conn.execute(
                "SELECT d.task_id FROM task_deps d JOIN tasks t ON t.task_id = d.task_id "
                "WHERE d.dep_id = ? AND t.status = 'W'",
                (done_id,),
            )
        ]
        for dependent in waiting:
            deps = [Status(r[0]) for r in conn.execute(_DEP_STATUSES, (dependent,))]
            new = from_dependencies(deps)
            if new == Status.PENDING:
                conn.execute("UPDATE tasks SET status = 'P', reason = '' WHERE task_id = ?", (dependent,))
            elif new == Status.CANCELLED:
                reason = _dependency_reason(done_id, done_status)
                conn.execute(
                    "UPDATE tasks SET status = 'X', reason = ?, ended_at = ? WHERE task_id = ?",
                    (reason, now, dependent),
                )
                cancelled.append(dependent)
                todo.append((dependent, Status.CANCELLED))
    return cancelled


_DEP_STATUSES = "SELECT t.status FROM task_deps d JOIN tasks t ON t.task_id = d.dep_id WHERE d.task_id = ?"


def rerun_after_failure(
    conn: sqlite3.Connection, task: TaskInfo, exit_code: int | None, reason: str, now: float
) -> bool:
    """A failed attempt with re-runs left goes back to P instead of F (the rule is `after_failed_attempt`); True
    when it did."""
    if after_failed_attempt(task.retry, task.failure_retries) != Status.PENDING:
        return False
    why = reason or (f"exit code {exit_code}" if exit_code is not None else "failed")
    conn.execute(
        "UPDATE tasks SET status = 'P', worker_id = NULL, started_at = NULL, ended_at = ?, exit_code = ?, "
        "failure_retries = failure_retries + 1, reason = ? WHERE task_id = ?",
        (
            now,
            exit_code,
            f"attempt {task.attempts} failed ({why}); re-run {task.failure_retries + 1} of {task.retry}",
            task.task_id,
        ),
    )
    return True


# --- cancel and retry ------------------------------------------------------------------------------------------


def select_ids(conn: sqlite3.Connection, task_ids: Sequence[int], name: str, statuses: frozenset[Status]) -> list[int]:
    """The tasks a TaskSelection names: given ids (unknown ones refused), narrowed by name and status if set."""
    if not task_ids and not name and not statuses:
        raise InvalidArgument("name the tasks: give task ids, a name, or a status filter")
    if task_ids:
        found = statuses_of(conn, task_ids)
        unknown = sorted(set(task_ids) - found.keys())
        if unknown:
            raise InvalidArgument(f"no {_id_list(unknown)}")
        ids = sorted(found)
        if not name and not statuses:
            return ids
    else:
        ids = []
    clauses, params = [], []
    if name:
        clauses.append("name = ?")
        params.append(name)
    if statuses:
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(sorted(s.value for s in statuses))
    where = " AND ".join(clauses) or "1"
    matching = [row[0] for row in conn.execute(f"SELECT task_id FROM tasks WHERE {where} ORDER BY task_id", params)]
    if task_ids:
        keep = set(ids)
        return [t for t in matching if t in keep]
    return matching


def cancel(conn: sqlite3.Connection, task_ids: Sequence[int], now: float) -> Changes:
    """Every unfinished task among `task_ids` becomes X now. Held ones keep their worker and are marked for
    killing: the worker learns it at its next ping, and its later report of them changes nothing."""
    changes = Changes()
    found = statuses_of(conn, task_ids)
    for task_id in sorted(found):
        status = found[task_id][0]
        if status not in CANCELLABLE:
            continue
        held = status in HELD
        conn.execute(
            "UPDATE tasks SET status = 'X', ended_at = ?, reason = 'cancelled', kill_pending = ?"
            + ("" if held else ", worker_id = NULL")
            + " WHERE task_id = ?",
            (now, int(held), task_id),
        )
        changes.ids.append(task_id)
        changes.finished.append(task_id)
        changes.finished.extend(settle_dependents(conn, task_id, Status.CANCELLED, now))
    return changes


def retry(conn: sqlite3.Connection, task_ids: Sequence[int], now: float) -> Changes:
    """Failed and cancelled tasks go back to the queue for a new attempt (P, or W if a dependency has not finished);
    dependents cancelled because of them wait again. A cancelled task still being killed on its worker, or one whose
    own dependency failed, is left as it is."""
    changes = Changes()
    todo = deque(sorted(task_ids))
    seen: set[int] = set()
    while todo:
        task_id = todo.popleft()
        if task_id in seen:
            continue
        seen.add(task_id)
        row = conn.execute("SELECT status, kill_pending FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if row is None or Status(row[0]) not in RETRYABLE or row[1]:
            continue
        new = from_dependencies(Status(r[0]) for r in conn.execute(_DEP_STATUSES, (task_id,)))
        if new == Status.CANCELLED:
            continue
        conn.execute(
            "UPDATE tasks SET status = ?, worker_id = NULL, exit_code = NULL, started_at = NULL, ended_at = NULL, "
            "reason = ? WHERE task_id = ?",
            (new.value, "re-run on request", task_id),
        )
        changes.ids.append(task_id)
        changes.requeued.append(task_id)
        todo.extend(
            row[0]
            for row in conn.execute(
                "SELECT d.task_id FROM task_deps d JOIN tasks t ON t.task_id = d.task_id "
                "WHERE d.dep_id = ? AND t.status = 'X' AND t.reason LIKE 'dependency %'",
                (task_id,),
            )
        )
    return changes


def cancel_requests(conn: sqlite3.Connection, worker_id: int) -> list[int]:
    """Cancelled tasks this worker still has to kill (it is told at every ping until it reports them)."""
    rows = conn.execute(
        "SELECT task_id FROM tasks WHERE worker_id = ? AND kill_pending = 1 AND status = 'X' ORDER BY task_id",
        (worker_id,),
    )
    return [row[0] for row in rows]


def acknowledge_kill(conn: sqlite3.Connection, task: TaskInfo, worker_id: int | None, final: bool) -> bool:
    """A report from the worker that held a task now cancelled: accepted and ignored (True). A final report (S or F)
    ends the kill request."""
    if task.status != Status.CANCELLED or worker_id is None or task.worker_id != worker_id:
        return False
    if final:
        conn.execute("UPDATE tasks SET kill_pending = 0 WHERE task_id = ?", (task.task_id,))
    return True


# --- slots -----------------------------------------------------------------------------------------------------


def held_slots(conn: sqlite3.Connection, worker_id: int) -> int:
    """Slots a worker's tasks take, including cancelled ones it has not killed yet."""
    return conn.execute(
        "SELECT COALESCE(SUM(slots), 0) FROM tasks WHERE worker_id = ? AND (status IN ('A', 'C', 'R') OR "
        "kill_pending = 1)",
        (worker_id,),
    ).fetchone()[0]


def fitting_pending(
    conn: sqlite3.Connection, room: int, largest: int, eligible: str = "1", params: Sequence[object] = ()
) -> list[int]:
    """Pending tasks, oldest first, whose slots fit in `room`, skipping any that do not (a later smaller task may
    go first: no task waits for one that cannot fit now); tasks larger than `largest` (the worker's concurrency)
    are never chosen. `eligible` is an SQL condition (with `params`) on what the worker can run."""
    chosen: list[int] = []
    rows = conn.execute(
        f"SELECT task_id, slots FROM tasks WHERE status = 'P' AND {eligible} ORDER BY task_id LIMIT ?",
        (*params, SCAN_LIMIT),
    )
    for task_id, slots in rows:
        if slots <= room and slots <= largest:
            chosen.append(task_id)
            room -= slots
            if room <= 0:
                break
    return chosen


# --- reading ---------------------------------------------------------------------------------------------------


def list_tasks(
    conn: sqlite3.Connection, statuses: frozenset[Status], name: str = "", task_ids: Sequence[int] = ()
) -> list[TaskInfo]:
    """Tasks filtered by status, name and ids, with their dependencies and why a task too big for every live
    worker is waiting."""
    clauses, params = [], []
    if statuses:
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(sorted(s.value for s in statuses))
    if name:
        clauses.append("name = ?")
        params.append(name)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    if task_ids:
        wanted = set(task_ids)
        records = []
        for chunk in _chunks(sorted(wanted)):
            joiner = " AND " if where else " WHERE "
            records += [
                TaskInfo.from_row(row)
                for row in conn.execute(
                    f"SELECT * FROM tasks{where}{joiner}task_id IN ({','.join('?' * len(chunk))}) ORDER BY task_id",
                    [*params, *chunk],
                )
            ]
    else:
        records = [
            TaskInfo.from_row(row) for row in conn.execute(f"SELECT * FROM tasks{where} ORDER BY task_id", params)
        ]
    return with_details(conn, records)


def with_details(conn: sqlite3.Connection, records: list[TaskInfo]) -> list[TaskInfo]:
    """Add each task's dependencies, and say why a pending task bigger than every live worker waits."""
    if not records:
        return records
    deps: dict[int, list[int]] = {}
    if conn.execute("SELECT 1 FROM task_deps LIMIT 1").fetchone():
        for chunk in _chunks([t.task_id for t in records]):
            marks = ",".join("?" * len(chunk))
            for task_id, dep in conn.execute(
                f"SELECT task_id, dep_id FROM task_deps WHERE task_id IN ({marks}) ORDER BY dep_id", chunk
            ):
                deps.setdefault(task_id, []).append(dep)
    largest = None
    if any(t.slots > 1 and t.status == Status.PENDING for t in records):
        largest = (
            conn.execute("SELECT MAX(concurrency) FROM workers WHERE state IN ('running', 'draining')").fetchone()[0]
            or 0
        )
    result = []
    for record in records:
        task = record
        if task.task_id in deps:
            task = replace(task, after=tuple(deps[task.task_id]))
        if largest is not None and task.status == Status.PENDING and task.slots > largest:
            have = f"largest live worker has {largest}" if largest else "no live worker"
            task = replace(task, reason=f"needs {plural(task.slots, 'slot')}; {have}")
        result.append(task)
    return result

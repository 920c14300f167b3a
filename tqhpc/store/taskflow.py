"""Task-flow operations: batch insert with dependencies, cancel, retry, and what a finished task unblocks.

Like tasks.py, each is a function of a connection run inside the writer's transaction (see database.py), so a
batch of ten thousand tasks and their dependency rows land in one commit, and a cancel cannot interleave with a
worker's report. Every status these functions write comes from the rules in `tqhpc.status`.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from ..errors import FailedPrecondition, InvalidArgument
from ..plural import plural
from ..records import TaskInfo
from ..status import CANCELLABLE, HELD, RETRYABLE, Status, after_failed_attempt, from_dependencies
from .changes import Changes

CHUNK = 500
"""Ids per `IN (...)` list: well under SQLite's limit on bound parameters."""
SCAN_LIMIT = 2000
"""How many pending tasks one assignment looks at for a declared run time that fits the worker's walltime left: a
ping never scans a huge queue."""


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
    timeout: float = 0.0  # wall-clock limit in seconds, 0: none
    memory_limit: int = 0  # RSS ceiling in bytes, 0: none
    time_request: float = 0.0  # declared run time in seconds, 0: not declared
    cwd: str = ""  # the absolute directory the task runs in; "": a scratch directory per attempt


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
        dep_status = _dependency_statuses(spec, index, first, external, initial, batch)
        status, reason = _initial_status(dep_status)
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


def _dependency_statuses(
    spec: NewTask,
    index: int,
    first: int,
    external: dict[int, tuple[Status, int | None]],
    initial: list[Status],
    batch: bool,
) -> dict[int, Status]:
    """The status of each task the batch's `index`-th task waits for, by id; refuses an unknown one and a task of
    the batch that is not earlier (`first` is the batch's first id, `initial` the statuses of its earlier tasks)."""
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
    return dep_status


def _initial_status(dep_status: dict[int, Status]) -> tuple[Status, str]:
    """A new task's status and reason given its dependencies' statuses (P without any)."""
    if not dep_status:
        return Status.PENDING, ""
    status = from_dependencies(dep_status.values())
    if status == Status.CANCELLED:
        culprit = next(d for d, s in dep_status.items() if s in (Status.FAILED, Status.CANCELLED))
        return status, _dependency_reason(culprit, dep_status[culprit])
    if status == Status.WAITING:
        return status, "waiting for " + _id_list(sorted(d for d, s in dep_status.items() if s != Status.SUCCEEDED))
    return status, ""


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
    changes.for_workers = bool(changes.ids)  # the workers holding them are told to kill them
    return changes


def retry(conn: sqlite3.Connection, task_ids: Sequence[int], now: float) -> Changes:
    """Failed and cancelled tasks go back to the queue for a new attempt (P, or W if a dependency has not finished);
    dependents cancelled because of them wait again. One whose own dependency failed is left as it is.

    A retry by the user is a fresh start: the crash count starts again at 0, so the task gets the whole crash limit.
    A cancelled task still being killed on its worker is refused, and with it the whole call: run twice at once, the
    old and the new attempt would write the same outputs. Its mark ends when the worker reports the kill, or when
    the worker is retired (see `drop_kills`).
    """
    refuse_while_killed(conn, task_ids)
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
            "reason = ?, crash_count = 0 WHERE task_id = ?",
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


def refuse_while_killed(conn: sqlite3.Connection, task_ids: Sequence[int]) -> None:
    """Refuse a retry of tasks whose worker has not killed them yet. Few tasks are ever being killed, so they are
    read from their partial index and matched against the selection, however large."""
    wanted = set(task_ids)
    killing = [
        (task_id, worker_id)
        for task_id, worker_id in conn.execute(
            "SELECT task_id, worker_id FROM tasks WHERE kill_pending = 1 AND status = 'X' ORDER BY task_id"
        )
        if task_id in wanted
    ]
    if killing:
        task_id, worker_id = killing[0]
        more = f" (and {plural(len(killing) - 1, 'more task')})" if len(killing) > 1 else ""
        raise FailedPrecondition(
            f"task {task_id}{more} is still being killed on worker {worker_id}: retry once the worker has stopped it "
            "(or is deleted or lost); nothing was retried"
        )


def drop_kills(conn: sqlite3.Connection, worker_id: int) -> None:
    """A retired worker (deleted, stopped or lost) will never report the kills it owes: its cancelled tasks are
    free to be retried."""
    conn.execute("UPDATE tasks SET kill_pending = 0 WHERE worker_id = ? AND kill_pending = 1", (worker_id,))


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
    """Slots a worker's tasks take, including cancelled ones it has not killed yet.

    It runs on every ping, so it must not grow with the tasks the worker has finished: the held statuses come from
    the (worker_id, status) index and the kills still owed from the partial kill_pending index; one `OR` over both
    would read every row the worker ever held. The UNION counts a task found by both lookups once.
    """
    return conn.execute(
        "SELECT COALESCE(SUM(slots), 0) FROM ("
        "SELECT task_id, slots FROM tasks INDEXED BY tasks_by_worker WHERE worker_id = ? AND status IN ('A', 'C', 'R')"
        " UNION "
        "SELECT task_id, slots FROM tasks INDEXED BY tasks_kill_pending WHERE worker_id = ? AND kill_pending = 1)",
        (worker_id, worker_id),
    ).fetchone()[0]


def fitting_pending(
    conn: sqlite3.Connection, room: int, largest: int, *, bare_only: bool = False, time_left: float | None = None
) -> list[int]:
    """Pending tasks, oldest first, whose slots fit in `room`, skipping any that do not (a later smaller task may
    go first: no task waits for one that cannot fit now); tasks larger than `largest` (the worker's concurrency)
    are never chosen. `bare_only`: the worker cannot run containers. `time_left`: the worker's walltime left, which
    a task's declared run time must not exceed (None: unbounded).

    The cost follows the worker's room, not the queue: for each task size that could fit, the oldest pending tasks
    of that size come in id order from an index on pending tasks by size (`tasks_pending`, or `tasks_pending_bare`
    for a worker without containers), and only as many as could be taken. A queue of a million tasks that are too
    big or in containers costs a ping a few index lookups. Declared run times are checked row by row, over at most
    SCAN_LIMIT rows per ping.
    """
    biggest = min(room, largest)
    if biggest <= 0:
        return []
    source = "tasks INDEXED BY tasks_pending_bare" if bare_only else "tasks INDEXED BY tasks_pending"
    bare = " AND container = ''" if bare_only else ""
    sql = f"SELECT task_id, time_request FROM {source} WHERE status = 'P'{bare} AND slots = ? ORDER BY task_id LIMIT ?"
    sizes = f"SELECT MIN(slots) FROM {source} WHERE status = 'P'{bare} AND slots > ? AND slots <= ?"
    candidates: list[tuple[int, int]] = []
    slots = 0
    # Only the sizes pending tasks have, each found by one index seek: a worker claiming a concurrency of four
    # billion must not cost four billion lookups.
    while (slots := conn.execute(sizes, (slots, biggest)).fetchone()[0]) is not None:
        wanted = room // slots  # the most tasks of this size that can ever be taken together
        window = wanted if time_left is None else max(wanted, SCAN_LIMIT // biggest)
        taken = 0
        for task_id, time_request in conn.execute(sql, (slots, window)):
            if time_left is None or time_request == 0 or time_request <= time_left:
                candidates.append((task_id, slots))
                taken += 1
                if taken == wanted:
                    break
    chosen: list[int] = []
    for task_id, slots in sorted(candidates):
        if slots <= room:
            chosen.append(task_id)
            room -= slots
            if room <= 0:
                break
    return chosen


# --- reading ---------------------------------------------------------------------------------------------------

PAGE_SIZE = 5000
"""Tasks per page of a listing: enough that per-page costs vanish, few enough that a page reads in milliseconds."""


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a listing shows: those with one of `statuses` (any if empty), this name (any if ""), among
    these ids (any if empty), with ids above `after`."""

    statuses: frozenset[Status] = frozenset()
    name: str = ""
    task_ids: tuple[int, ...] = ()  # sorted, each once
    after: int = 0


def list_tasks(
    conn: sqlite3.Connection, statuses: frozenset[Status], name: str = "", task_ids: Sequence[int] = ()
) -> list[TaskInfo]:
    """Tasks filtered by status, name and ids, with their dependencies and why a task too big for every live
    worker is waiting."""
    wanted = TaskFilter(statuses, name, tuple(sorted(set(task_ids))))
    records: list[TaskInfo] = []
    while page := with_details(conn, TaskInfo.from_rows(page_rows(conn, wanted, PAGE_SIZE))):
        records += page
        wanted = replace(wanted, after=page[-1].task_id)
    return records


def page_rows(conn: sqlite3.Connection, wanted: TaskFilter, limit: int, columns: str = "*") -> list[sqlite3.Row]:
    """`columns` of the first `limit` tasks that `wanted` names, in id order; fewer only at the end of the listing.

    Keyset paging: a page starts where the last one ended (`wanted.after`) through an index, so a page costs the
    same at the end of a million tasks as at the start, and a listing never holds a read open for its whole length.
    """
    where, params = ["task_id > ?"], [wanted.after]
    if wanted.statuses:
        where.append(f"status IN ({','.join('?' * len(wanted.statuses))})")
        params += sorted(s.value for s in wanted.statuses)
    if wanted.name:
        where.append("name = ?")
        params.append(wanted.name)
    if wanted.task_ids:
        return _page_of_ids(conn, wanted.task_ids, wanted.after, limit, columns, " AND ".join(where[1:]), params[1:])
    if wanted.name:
        source = "tasks INDEXED BY tasks_by_name"  # a name is the narrowest index; the status is checked row by row
    elif len(wanted.statuses) > 1:
        return _page_of_statuses(conn, wanted, limit, columns)
    else:
        source = "tasks"  # by status (tasks_by_status) or by id
    sql = f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)} ORDER BY task_id LIMIT ?"
    return conn.execute(sql, (*params, limit)).fetchall()


def _page_of_ids(
    conn: sqlite3.Connection,
    task_ids: Sequence[int],
    after: int,
    limit: int,
    columns: str,
    where: str,
    params: list[object],
) -> list[sqlite3.Row]:
    """Given ids (sorted): look them up a chunk at a time, going on past chunks where none matches the other
    filters, until the page is full or the ids run out."""
    rows: list[sqlite3.Row] = []
    start = bisect.bisect_right(task_ids, after)
    condition = f" AND {where}" if where else ""
    while len(rows) < limit and start < len(task_ids):
        chunk = task_ids[start : start + CHUNK]
        start += len(chunk)
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT {columns} FROM tasks WHERE task_id IN ({marks}){condition} ORDER BY task_id"
        rows += conn.execute(sql, (*chunk, *params)).fetchall()
    return rows[:limit]


def _page_of_statuses(conn: sqlite3.Connection, wanted: TaskFilter, limit: int, columns: str) -> list[sqlite3.Row]:
    """Several statuses: the first ids of each, read in order from the status index, merged; then their rows. One
    query over all of them would sort every match again for each page."""
    letters = sorted(s.value for s in wanted.statuses)
    ids: list[int] = []
    for letter in letters:
        ids += (
            row[0]
            for row in conn.execute(
                "SELECT task_id FROM tasks WHERE status = ? AND task_id > ? ORDER BY task_id LIMIT ?",
                (letter, wanted.after, limit),
            )
        )
    if not ids:
        return []
    ids = sorted(ids)[:limit]
    # Read in the same snapshot as the ids, the range holds exactly these among the tasks with these statuses.
    return conn.execute(
        f"SELECT {columns} FROM tasks WHERE task_id BETWEEN ? AND ? AND status IN ({','.join('?' * len(letters))}) "
        "ORDER BY task_id",
        (ids[0], ids[-1], *letters),
    ).fetchall()


def select_by_ids(conn: sqlite3.Connection, sql: str, ids: Sequence[int]) -> Iterator[sqlite3.Row]:
    """Run `sql`, whose `{ids}` is where the condition on `task_id` goes, for these ids (sorted): one range when they
    are dense (a page of a listing), else `IN` lists. A range may bring rows of other ids too: callers that mind,
    filter."""
    if not ids:
        return iter(())
    if ids[-1] - ids[0] < 2 * len(ids):
        return conn.execute(sql.format(ids="task_id BETWEEN ? AND ?"), (ids[0], ids[-1]))
    return (
        row
        for chunk in _chunks(ids)
        for row in conn.execute(sql.format(ids=f"task_id IN ({','.join('?' * len(chunk))})"), chunk)
    )


def dependencies(conn: sqlite3.Connection, task_ids: Sequence[int]) -> dict[int, list[int]]:
    """What each of these tasks (sorted ids) waits for; tasks without dependencies are left out."""
    deps: dict[int, list[int]] = {}
    if not conn.execute("SELECT 1 FROM task_deps LIMIT 1").fetchone():
        return deps
    wanted = set(task_ids)
    sql = "SELECT task_id, dep_id FROM task_deps WHERE {ids} ORDER BY task_id, dep_id"
    for task_id, dep in select_by_ids(conn, sql, task_ids):
        if task_id in wanted:
            deps.setdefault(task_id, []).append(dep)
    return deps


def largest_live_worker(conn: sqlite3.Connection) -> int:
    """The most slots any live worker has (0 when none is live)."""
    row = conn.execute("SELECT MAX(concurrency) FROM workers WHERE state IN ('running', 'draining')").fetchone()
    return row[0] or 0


def too_big_reason(slots: int, largest: int) -> str:
    """Why a pending task waits when it needs more slots than any live worker has."""
    have = f"largest live worker has {largest}" if largest else "no live worker"
    return f"needs {plural(slots, 'slot')}; {have}"


def with_details(conn: sqlite3.Connection, records: list[TaskInfo]) -> list[TaskInfo]:
    """Add each task's dependencies, and say why a pending task bigger than every live worker waits."""
    if not records:
        return records
    deps = dependencies(conn, sorted(t.task_id for t in records))
    largest = None
    if any(t.slots > 1 and t.status == Status.PENDING for t in records):
        largest = largest_live_worker(conn)
    if not deps and largest is None:
        return records
    result = []
    for record in records:
        task = record
        if task.task_id in deps:
            task = task.copy_with(after=tuple(deps[task.task_id]))
        if largest is not None and task.status == Status.PENDING and task.slots > largest:
            task = task.copy_with(reason=too_big_reason(task.slots, largest))
        result.append(task)
    return result

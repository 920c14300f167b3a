"""Worker operations: registration, heartbeat with assignment, loss and deletion."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Set
from dataclasses import dataclass, field

from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..records import TaskInfo, WorkerInfo, WorkerState
from . import crashes, taskflow, tasks, usage

_LIVE_SQL = "(" + ", ".join(f"'{state}'" for state in sorted(WorkerState.LIVE)) + ")"
# A retired worker (lost, deleted, stopped) holds nothing, whatever rows still name it: its tasks were handed on.
_WITH_COUNTS = f"""
    SELECT w.*,
        CASE WHEN w.state IN {_LIVE_SQL} THEN
            (SELECT COUNT(*) FROM tasks t WHERE t.worker_id = w.worker_id AND t.status = 'R')
        ELSE 0 END AS running,
        CASE WHEN w.state IN {_LIVE_SQL} THEN
            (SELECT COUNT(*) FROM tasks t WHERE t.worker_id = w.worker_id AND t.status IN ('A', 'C', 'R'))
        ELSE 0 END AS held
    FROM workers w
"""


REGISTER_FIRST = ": register it first (RegisterWorker)"
"""What a worker process that speaks under an unknown id should do; a person deleting one needs no such hint."""


def get_worker(conn: sqlite3.Connection, worker_id: int, hint: str = "") -> WorkerInfo:
    """The worker with its task counts; NotFound says "no worker N", then `hint` for whoever asked."""
    row = conn.execute(_WITH_COUNTS + " WHERE w.worker_id = ?", (worker_id,)).fetchone()
    if row is None:
        raise NotFound(f"no worker {worker_id}{hint}")
    return WorkerInfo.from_row(row)


def list_workers(conn: sqlite3.Connection, include_retired: bool = False) -> list[WorkerInfo]:
    """Live workers (starting, running, draining), oldest first; with `include_retired` also those that are gone."""
    if include_retired:
        return [WorkerInfo.from_row(row) for row in conn.execute(_WITH_COUNTS + " ORDER BY w.worker_id")]
    live = sorted(WorkerState.LIVE)
    marks = ",".join("?" * len(live))
    rows = conn.execute(_WITH_COUNTS + f" WHERE w.state IN ({marks}) ORDER BY w.worker_id", live)
    return [WorkerInfo.from_row(row) for row in rows]


def create_workers(
    conn: sqlite3.Connection, number: int, provider: str, concurrency: int, prefetch: int, now: float
) -> list[int]:
    """Reserve worker ids for workers a provider is about to start; they register under these ids."""
    ids = []
    for _ in range(number):
        cursor = conn.execute(
            "INSERT INTO workers (name, concurrency, prefetch, state, provider, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            ("", concurrency, prefetch, WorkerState.STARTING, provider, now),
        )
        worker_id = int(cursor.lastrowid)  # type: ignore[arg-type]
        conn.execute("UPDATE workers SET name = ? WHERE worker_id = ?", (f"{provider}-{worker_id}", worker_id))
        ids.append(worker_id)
    return ids


def set_pid(conn: sqlite3.Connection, worker_id: int, pid: int) -> None:
    conn.execute("UPDATE workers SET pid = ? WHERE worker_id = ?", (pid, worker_id))


def register(
    conn: sqlite3.Connection,
    *,
    name: str,
    concurrency: int,
    prefetch: int,
    hostname: str,
    pid: int | None,
    now: float,
    worker_id: int | None = None,
    walltime_end: float | None = None,
) -> WorkerInfo:
    """Register a new worker, or bring a worker created by CreateWorker to life under its reserved id."""
    if worker_id is None:
        cursor = conn.execute(
            "INSERT INTO workers (name, concurrency, prefetch, state, hostname, pid, created_at, last_ping) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, concurrency, prefetch, WorkerState.RUNNING, hostname, pid, now, now),
        )
        worker_id = int(cursor.lastrowid)  # type: ignore[arg-type]
        if not name:
            conn.execute("UPDATE workers SET name = ? WHERE worker_id = ?", (f"worker-{worker_id}", worker_id))
        set_walltime_end(conn, worker_id, walltime_end)
        return get_worker(conn, worker_id)
    existing = get_worker(conn, worker_id, ": register without a worker id, or with one that CreateWorker gave")
    if existing.state != WorkerState.STARTING:
        raise FailedPrecondition(
            f"worker {worker_id} is {existing.state}, not waiting to register; register without a worker id"
        )
    conn.execute(
        "UPDATE workers SET name = ?, concurrency = ?, prefetch = ?, state = ?, hostname = ?, pid = ?, "
        "last_ping = ? WHERE worker_id = ?",
        (name or existing.name, concurrency, prefetch, WorkerState.RUNNING, hostname, pid, now, worker_id),
    )
    set_walltime_end(conn, worker_id, walltime_end)
    return get_worker(conn, worker_id)


def set_walltime_end(conn: sqlite3.Connection, worker_id: int, walltime_end: float | None) -> None:
    """When the worker stops running tasks (its Slurm job's end minus its margin); None: no limit."""
    conn.execute("UPDATE workers SET walltime_end = ? WHERE worker_id = ?", (walltime_end, worker_id))


@dataclass(frozen=True)
class PingResult:
    tasks: list[TaskInfo]
    concurrency: int
    cancel_ids: list[int] = field(default_factory=list)  # cancelled tasks the worker must kill


def ping(conn: sqlite3.Connection, worker_id: int, now: float, *, draining: bool = False) -> PingResult:
    """Heartbeat, then top the worker up to concurrency + prefetch held tasks, then every task it has not accepted.

    Returning every `A` task, not only the new ones, is what makes a lost reply harmless: the next ping resends it.
    """
    worker = get_worker(conn, worker_id, REGISTER_FIRST)
    if worker.state == WorkerState.STARTING:
        raise FailedPrecondition(f"worker {worker_id} was created but never registered: call RegisterWorker first")
    if worker.state not in WorkerState.LIVE:
        raise FailedPrecondition(retired_message(worker_id, worker.state))
    state = WorkerState.DRAINING if draining else WorkerState.RUNNING
    conn.execute("UPDATE workers SET last_ping = ?, state = ? WHERE worker_id = ?", (now, state, worker_id))
    if not draining:
        room = worker.concurrency + worker.prefetch - taskflow.held_slots(conn, worker_id)  # in slots
        time_left = None if worker.walltime_end is None else worker.walltime_end - now
        tasks.assign_pending(conn, worker_id, room, largest=worker.concurrency, time_left=time_left)
    return PingResult(
        tasks=tasks.assigned_tasks(conn, worker_id)[0],
        concurrency=worker.concurrency,
        cancel_ids=taskflow.cancel_requests(conn, worker_id),
    )


def update_worker(
    conn: sqlite3.Connection, worker_id: int, *, concurrency: int | None, prefetch: int | None
) -> WorkerInfo:
    worker = get_worker(conn, worker_id)
    if worker.state not in WorkerState.LIVE:
        raise FailedPrecondition(f"worker {worker_id} is {worker.state}; only a live worker can be changed")
    if concurrency is not None:
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        conn.execute("UPDATE workers SET concurrency = ? WHERE worker_id = ?", (concurrency, worker_id))
    if prefetch is not None:
        conn.execute("UPDATE workers SET prefetch = ? WHERE worker_id = ?", (prefetch, worker_id))
    return get_worker(conn, worker_id)


def release(conn: sqlite3.Connection, worker_id: int, task_ids: list[int], reason: str) -> list[int]:
    """Tasks a worker hands back: only those it really holds go back to pending.

    A deleted worker hands back the tasks it killed on learning of its deletion: their attempts were cut by it.
    """
    worker = get_worker(conn, worker_id, REGISTER_FIRST)
    held = set(tasks.held_task_ids(conn, worker_id))
    cut = usage.CutShort.HANDED_BACK
    if worker.state == WorkerState.DELETED:
        cut, reason = usage.CutShort.WORKER_DELETED, f"worker {worker_id} was deleted"
    return tasks.requeue(conn, [t for t in task_ids if t in held], reason, cut)


def retired_message(worker_id: int, state: str) -> str:
    """What a worker no longer counted as live is told when it calls."""
    if state == WorkerState.DELETED:
        return f"worker {worker_id} is deleted; kill its tasks and hand them back to the queue, then stop"
    return f"worker {worker_id} is {state}; its tasks went back to the queue: stop, or register again"


def release_deleted(conn: sqlite3.Connection, worker_id: int, reason: str) -> list[int]:
    """A deleted worker's tasks go back to pending once it cannot be running them any more (see `retire`)."""
    if get_worker(conn, worker_id).state != WorkerState.DELETED:
        return []
    return tasks.requeue(conn, tasks.held_task_ids(conn, worker_id), reason, usage.CutShort.WORKER_DELETED)


def silent_deleted_holders(conn: sqlite3.Connection, deadline: float) -> list[int]:
    """Deleted workers still holding tasks whose last ping is older than `deadline`: lost, so their tasks may go."""
    rows = conn.execute(
        "SELECT DISTINCT worker_id FROM tasks WHERE worker_id IN"
        " (SELECT worker_id FROM workers WHERE state = ? AND COALESCE(last_ping, 0) < ?)",
        (WorkerState.DELETED, deadline),
    )
    return [row[0] for row in rows if tasks.held_task_ids(conn, row[0])]


def retire(
    conn: sqlite3.Connection,
    worker_id: int,
    state: str,
    reason: str,
    crash_limit: int = crashes.DEFAULT_CRASH_LIMIT,
    *,
    hold_tasks: bool = False,
) -> tuple[WorkerInfo, list[int]]:
    """Mark a worker deleted, stopped or lost and send its unfinished tasks back to pending.

    A lost worker's running tasks count a crash each; at `crash_limit` they fail instead. The kills it still owes
    end with it, so its cancelled tasks can be retried. A live worker deleted with `hold_tasks` (one with a session,
    which hands its tasks back once it has killed them) keeps its tasks for now: it may be running any of them (one
    pushed to it may have started before its report says so), and a second copy must not start before it has killed
    its own. They go back when it hands them back, when its session breaks, or when it is silent for the worker
    timeout (`release_deleted`).
    """
    worker = get_worker(conn, worker_id)
    held = tasks.held_task_ids(conn, worker_id)
    if hold_tasks and state == WorkerState.DELETED and worker.state in WorkerState.LIVE:
        conn.execute("UPDATE workers SET state = ? WHERE worker_id = ?", (state, worker_id))
        return get_worker(conn, worker_id), []
    if state == WorkerState.LOST:
        requeued, _ = crashes.requeue_after_loss(conn, held, reason, crash_limit)
    else:
        cut = usage.CutShort.WORKER_DELETED if state == WorkerState.DELETED else usage.CutShort.HANDED_BACK
        requeued = tasks.requeue(conn, held, reason, cut)
    taskflow.drop_kills(conn, worker_id)
    if worker.state in WorkerState.LIVE:
        conn.execute("UPDATE workers SET state = ? WHERE worker_id = ?", (state, worker_id))
    return get_worker(conn, worker_id), requeued


def seen(conn: sqlite3.Connection, times: dict[int, float]) -> None:
    """Heartbeats kept in memory (see SessionBook.seen), written down: a later ping time only moves forward."""
    conn.executemany(
        "UPDATE workers SET last_ping = MAX(COALESCE(last_ping, 0), ?) WHERE worker_id = ?",
        [(when, worker_id) for worker_id, when in times.items()],
    )


def silent_workers(conn: sqlite3.Connection, deadline: float) -> list[int]:
    """Registered workers whose last ping is older than `deadline`."""
    rows = conn.execute(
        "SELECT worker_id FROM workers WHERE state IN (?, ?) AND last_ping < ?",
        (WorkerState.RUNNING, WorkerState.DRAINING, deadline),
    )
    return [row[0] for row in rows]


@dataclass(frozen=True)
class Dispatch:
    """What a session stream pushes to its worker: the tasks assigned to it and not accepted, its cancels, sizes."""

    tasks: list[TaskInfo]  # the assigned tasks not sent yet (all of them, for a dispatch told of none sent)
    assigned: set[tuple[int, int]]  # (task, attempt) of every task assigned to the worker and not yet accepted
    concurrency: int
    prefetch: int
    cancel_ids: list[int]
    taken: int = field(default_factory=lambda: next(_DISPATCHES))
    """When it was read, in the store's order (one writer thread): an older reading than one already sent is stale."""


_DISPATCHES = itertools.count(1)


def dispatch(
    conn: sqlite3.Connection, worker_id: int, now: float, sent: Set[tuple[int, int]] = frozenset()
) -> Dispatch:
    """Top a session worker up to concurrency + prefetch held slots, as `ping` does, but without a heartbeat.

    A draining worker is given nothing new; a retired one is refused (its session then ends). Of the assigned
    tasks, only those not in `sent` (task, attempt) come as records.
    """
    # Only what dispatch needs: it runs with every report, and get_worker also counts the worker's tasks.
    row = conn.execute(
        "SELECT state, concurrency, prefetch, walltime_end, container_capable FROM workers WHERE worker_id = ?",
        (worker_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no worker {worker_id}{REGISTER_FIRST}")
    state, concurrency, prefetch, walltime_end, capable = row
    if state not in WorkerState.LIVE or state == WorkerState.STARTING:
        raise FailedPrecondition(retired_message(worker_id, state))
    if state != WorkerState.DRAINING:
        room = concurrency + prefetch - taskflow.held_slots(conn, worker_id)
        time_left = None if walltime_end is None else walltime_end - now
        containers = capable is None or capable != 0  # unknown counts as able, as usage.can_run_containers says
        tasks.assign_pending(conn, worker_id, room, largest=concurrency, time_left=time_left, containers=containers)
    new, assigned = tasks.assigned_tasks(conn, worker_id, sent)
    return Dispatch(
        tasks=new,
        assigned=assigned,
        concurrency=concurrency,
        prefetch=prefetch,
        cancel_ids=taskflow.cancel_requests(conn, worker_id),
    )


def last_report(conn: sqlite3.Connection, worker_id: int) -> int:
    """The sequence number of the last session report applied for this worker (0: none yet)."""
    row = conn.execute("SELECT last_report FROM workers WHERE worker_id = ?", (worker_id,)).fetchone()
    return int(row[0]) if row is not None else 0


def heartbeat(conn: sqlite3.Connection, worker_id: int, now: float, sequence: int) -> None:
    """A session report arrived: the worker is alive, and this report is applied (in the same transaction)."""
    conn.execute("UPDATE workers SET last_ping = ?, last_report = ? WHERE worker_id = ?", (now, sequence, worker_id))

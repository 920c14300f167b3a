"""One SQLite connection, one writer thread, many operations per transaction.

Parsl's "database is locked" failures under load are the warning: many writers fighting over one file. Here every
operation is a plain function of a connection, queued to a single thread that runs all the operations waiting at
that moment in one transaction (each under its own SAVEPOINT, so one refused operation does not undo the others)
and commits once. Callers get their result only after the commit, so an acknowledged write is on disk.

What must follow a commit before any later operation can see its effect (moving a requeued task's output aside
before another operation hands the task to a worker) is registered with `after_commit` from inside the operation;
it runs on the writer thread right after the commit, and never for an operation that was undone.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .health import StorageHealth
from .schema import migrate

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

log = logging.getLogger("tqhpc.server")

MAX_BATCH = 512
_STOP = object()
_Outcome = tuple[Future, bool, object, list[Callable[[], None]]]
"""An operation of a batch: its future, whether it stood, its answer or error, and its after-commit actions."""


def connect(path: Path) -> sqlite3.Connection:
    """Open the database in WAL mode with the settings every connection here needs."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise RuntimeError(f"SQLite refused WAL mode for {path} (got {mode}); is it on a filesystem without locks?")
    # NORMAL is durable across a process crash in WAL mode; only a power loss may drop the last transactions.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection of its own, for reads long enough to hold up the writer (a listing of a million tasks).

    In WAL mode it reads committed snapshots while the writer goes on committing; it can be used from any one thread
    at a time.
    """
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=30
    )
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run several reads on one snapshot: what they return fits together even while the writer commits."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")


class Database:
    """The single writer. `run` from asyncio code, `call` from plain threads (tests, tools)."""

    def __init__(self, path: Path, health: StorageHealth | None = None) -> None:
        self.path = path
        self.health = health or StorageHealth()
        self._conn = connect(path)
        migrate(self._conn)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="tqhpc-db", daemon=True)
        self._closed = False
        self.batches = 0
        self.operations = 0
        self._registered: list[Callable[[], None]] = []  # the running operation's after-commit actions
        self._thread.start()

    def call(self, op: Operation[T]) -> T:
        return self.submit(op).result()

    async def run(self, op: Operation[T]) -> T:
        return await asyncio.wrap_future(self.submit(op))

    def submit(self, op: Operation[T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the database is closed")
        future: Future[T] = Future()
        self._queue.put((op, future))
        return future

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` on the writer thread once the running operation is committed, before the next operation
        starts; dropped if the operation is undone. Call it only from inside an operation."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("after_commit is for operations running on the writer thread")
        self._registered.append(action)

    def _take_registered(self) -> list[Callable[[], None]]:
        registered, self._registered = self._registered, []
        return registered

    @staticmethod
    def _run_actions(actions: list[Callable[[], None]]) -> None:
        for action in actions:
            try:
                action()
            except Exception:  # the commit stands: its answer must still reach the caller
                log.exception("an action after a commit failed")

    def close(self) -> None:
        """Run every operation already queued, commit, then close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        log.info("database closed: %d operations in %d transactions", self.operations, self.batches)
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(batch)

    def _run_alone(self, op: Operation[object], future: Future[object]) -> None:
        """One operation, its own transaction: no savepoint needed to undo it alone."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            try:
                result = op(conn)
            except Exception:
                if conn.in_transaction:  # SQLite may have rolled back already (a full disk, say)
                    conn.execute("ROLLBACK")
                raise
            wrote = conn.total_changes != before
            conn.execute("COMMIT")
            if wrote:
                self.health.worked()
        except Exception as err:  # the operation refused, or the commit itself failed (disk full, I/O error)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._take_registered()
            self._settle(future, False, err)
        else:
            self._run_actions(self._take_registered())
            self._settle(future, True, result)
        finally:
            self.batches += 1
            self.operations += 1

    @staticmethod
    def _settle(future: Future[object], ok: bool, value: object) -> None:
        if future.set_running_or_notify_cancel():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)  # type: ignore[arg-type]

    def _settle_all(self, batch: list, err: Exception) -> None:
        self.batches += 1
        self.operations += len(batch)
        for _, future in batch:
            self._settle(future, False, err)

    def _run_in_savepoint(self, op: Operation[object], future: Future[object]) -> _Outcome:
        """One operation of a batch, undone alone if it refuses; raises only when the transaction itself failed."""
        conn = self._conn
        conn.execute("SAVEPOINT op")
        try:
            result = op(conn)
        except Exception as err:
            self._take_registered()
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return future, False, err, []
        conn.execute("RELEASE op")
        return future, True, result, self._take_registered()

    def _run_batch(self, batch: list) -> None:
        conn = self._conn
        if len(batch) == 1:
            self._run_alone(*batch[0])
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as err:  # the database stayed locked for the whole busy timeout: nothing of the batch ran
            self._settle_all(batch, err)
            return
        before = conn.total_changes
        try:
            outcomes = [self._run_in_savepoint(op, future) for op, future in batch]
            wrote = conn.total_changes != before
            conn.execute("COMMIT")
        except Exception:  # the commit itself failed (disk full, I/O error): nothing of the batch stands
            self._take_registered()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Each operation again in a transaction of its own: one that writes nothing (a read) still gets its
            # answer while the disk is full, and only those that need the space fail.
            for op, future in batch:
                self._run_alone(op, future)
            return
        if wrote:
            self.health.worked()
        self.batches += 1
        self.operations += len(batch)
        self._run_actions([action for *_, actions in outcomes for action in actions])
        for future, ok, value, _ in outcomes:
            self._settle(future, ok, value)

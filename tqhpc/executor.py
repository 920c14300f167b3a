"""`tqhpc.Executor`: the queue as a `concurrent.futures.Executor`, so `as_completed`, `wait` and `map` work on tasks
as Python users (and Parsl's and dask's) expect.

A future's result is the task's `TaskResult`, whatever became of the task: a failed task is a result with `ok` False
(its exit code, failure kind and reason are there to read), not an exception. A future gets an exception only when
its result cannot be known: the server stayed unreachable for `give_up_after` seconds, or the task no longer exists
there (pruned). One background thread polls the status of every pending future in one `GetTaskStatuses` call per
interval, however many futures there are, and reads the results of those that ended in one listing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as _Executor
from concurrent.futures import Future
from typing import Any

from .client import Client, ClientError, TaskResult
from .status import Status

QUEUED = frozenset({Status.WAITING, Status.PENDING, Status.ASSIGNED, Status.ACCEPTED})
"""Statuses of a task that has not started: its future can still be cancelled."""
QUEUED_LETTERS = "".join(s.value for s in QUEUED)
ENDED_LETTERS = frozenset(s.value for s in Status if s.terminal)


class TaskFuture(Future[TaskResult]):
    """A `Future` for one task; `task_id` names it on the server (`tqhpc task ID`, `tqhpc logs ID`)."""

    def __init__(self, executor: Executor, task_id: int) -> None:
        super().__init__()
        self.task_id = task_id
        self._executor = executor

    def cancel(self) -> bool:
        """Cancel the task on the server if it has not started, as the standard library cancels a call not yet
        running; False when it runs or has ended (a running task is not killed: `Client.cancel` does that), or
        when the server cannot be reached."""
        if self.running() or self.done():
            return self.cancelled()
        try:
            self._executor._cancel_futures([self])
        except ClientError:
            return False
        return self.cancelled()

    def __repr__(self) -> str:
        return f"<TaskFuture task {self.task_id} {super().__repr__()[1:-1]}>"


class Executor(_Executor):
    """Run commands as tqhpc tasks: `submit("python sim.py --seed 3")` returns a `TaskFuture`.

    `client`: a `Client` (kept open at shutdown), or what `Client()` takes (an access file, a state directory, None
    for the default lookup), opened here and closed when the executor has shut down and its futures are done.
    `poll_interval`: seconds between status polls. `give_up_after`: seconds of failed polls (the server down or
    unreachable) after which every pending future gets the `ClientError` as its exception.

    Unlike a thread pool, the work is not in this process: a program may exit with futures pending (the polling
    thread is a daemon), and their tasks go on on the server, where `tqhpc tasks` and `Client.wait` find them.
    """

    def __init__(
        self,
        client: Client | str | os.PathLike[str] | None = None,
        *,
        poll_interval: float = 0.5,
        give_up_after: float = 60.0,
    ) -> None:
        if poll_interval <= 0 or give_up_after <= 0:
            raise ValueError("poll_interval and give_up_after must be positive")
        self._owns_client = not isinstance(client, Client)
        self.client = client if isinstance(client, Client) else Client(client)
        self.poll_interval = poll_interval
        self.give_up_after = give_up_after
        self._pending: dict[int, TaskFuture] = {}
        self._lock = threading.Condition()
        self._shutdown = False
        self._cancelling = 0  # calls of _cancel_futures under way: the futures they hold will come back
        self._poller = threading.Thread(target=self._poll_until_done, name="tqhpc-executor", daemon=True)
        self._poller.start()

    # --- submitting ---------------------------------------------------------------------------------------------

    def submit(self, command: str, /, *args: Any, **options: Any) -> TaskFuture:  # type: ignore[override]
        """Queue `command` (a shell command line) with `Client.submit`'s options (`name`, `retry`, `slots`,
        `timeout`, `memory_limit`, `time_request`, `cwd`, `container`, and `after`, which takes futures too).
        Positional arguments beyond the command are quoted onto it: `submit("gzip", "-k", path)`."""
        if not isinstance(command, str):
            raise TypeError(
                f"Executor.submit takes a command line (str), not {type(command).__name__}: tasks are commands"
            )
        line = shlex.join([command, *map(str, args)]) if args else command
        return self._submit_many([line], options)[0]

    def map(  # type: ignore[override]
        self,
        fn: str | Callable[..., str],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        **options: Any,
    ) -> Iterator[TaskResult]:
        """One task per item (as `map` zips several iterables), submitted at once in batches; the results come
        back in order, like `Executor.map`.

        `fn` makes each command: a template whose `{}` fields take the items, shell-quoted
        (`map("gzip -k {}", paths)`, `map("fit {} {}", alphas, betas)`; it is a `str.format` template, so a brace
        the shell needs is doubled: `{{`), or a callable returning the command line
        (`map(lambda p: f"gzip -k {shlex.quote(p)}", paths)`). `options` are `submit`'s, for every task.
        Leaving the loop early cancels the tasks not yet started, as the standard library does."""
        del chunksize  # every call is one batch already
        deadline = None if timeout is None else time.monotonic() + timeout
        commands = [_command(fn, args) for args in zip(*iterables, strict=False)]
        futures = self._submit_many(commands, options)

        def results() -> Iterator[TaskResult]:
            futures.reverse()
            try:
                while futures:
                    future = futures[-1]
                    yield future.result() if deadline is None else future.result(deadline - time.monotonic())
                    futures.pop()
            finally:
                with contextlib.suppress(ClientError):  # the futures then end as their tasks do
                    self._cancel_futures(futures)

        return results()

    def _submit_many(self, commands: list[str], options: dict[str, Any]) -> list[TaskFuture]:
        after = options.get("after")
        if after is not None:
            options = {**options, "after": tuple(f.task_id if isinstance(f, TaskFuture) else f for f in after)}
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if len(commands) == 1:
                ids = [self.client.submit(commands[0], **options)]
            else:
                specs = [{"command": command, **options} for command in commands]
                ids = self.client.submit_many(specs)
            futures = [TaskFuture(self, task_id) for task_id in ids]
            self._pending.update((f.task_id, f) for f in futures)
            self._lock.notify_all()
        return futures

    # --- ending -------------------------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits. `cancel_futures`: cancel every pending future whose task has not started, on the server
        too (one call). `wait`: return once every future is done; otherwise at once, the futures still completing
        in the background."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending.values())
            self._lock.notify_all()
        if cancel_futures:
            self._cancel_futures(pending)
        if wait:
            self._poller.join()

    def _cancel_futures(self, futures: list[TaskFuture]) -> None:
        """Cancel those of the futures whose tasks have not started, on the server in one call. A task that started
        meanwhile is left running: the server checks the status and cancels in one transaction. While the call
        runs the futures are out of the poller's hands, so a cancelled task's future ends cancelled, never with
        the result of a task in X."""
        with self._lock:
            held = [f for f in futures if not f.running() and self._pending.pop(f.task_id, None) is not None]
            self._cancelling += 1
        cancelled: set[int] = set()
        try:
            if held:
                cancelled = set(self.client.cancel([f.task_id for f in held], status=QUEUED_LETTERS))
        finally:
            with self._lock:
                for future in held:
                    if future.task_id in cancelled:
                        Future.cancel(future)
                        future.set_running_or_notify_cancel()  # it will never run: its waiters learn it now
                    else:
                        self._pending[future.task_id] = future
                self._cancelling -= 1
                self._lock.notify_all()

    # --- the poller ---------------------------------------------------------------------------------------------

    def _poll_until_done(self) -> None:
        failing_since: float | None = None
        while True:
            with self._lock:
                while not self._pending and (not self._shutdown or self._cancelling):
                    self._lock.wait()
                if not self._pending:
                    break
                ids = sorted(self._pending)
            try:
                self._poll(ids)
                failing_since = None
            except ClientError as err:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.give_up_after:
                    self._fail_all(err)
                    failing_since = None
            except Exception as err:  # a closed client, a bug: the futures get it rather than wait forever
                self._fail_all(err)
            # The next poll comes one interval after this one, however many submits come meanwhile.
            next_poll = time.monotonic() + self.poll_interval
            with self._lock:
                while self._pending and (left := next_poll - time.monotonic()) > 0:
                    self._lock.wait(left)
        if self._owns_client:
            self.client.close()

    def _poll(self, ids: list[int]) -> None:
        """One status call for every pending task; then the results of those that ended, in one listing."""
        letters = self.client.letters(ids, allow_unknown=True)
        ended = [task_id for task_id, letter in zip(ids, letters, strict=True) if letter in ENDED_LETTERS]
        gone = [task_id for task_id, letter in zip(ids, letters, strict=True) if letter == "?"]
        started = [task_id for task_id, letter in zip(ids, letters, strict=True) if letter == Status.RUNNING.value]
        with self._lock:
            for task_id in started:
                future = self._pending.get(task_id)
                if future is not None and not future.running() and not future.done():
                    future.set_running_or_notify_cancel()
        results = self.client.status(ended) if ended else []
        for result in results:
            future = self._take(result.task_id)
            if future is not None and not future.done():
                future.set_result(result)
        for task_id in gone:
            future = self._take(task_id)
            if future is not None and not future.done():
                future.set_exception(ClientError(f"task {task_id} no longer exists on the server (pruned?)"))

    def _take(self, task_id: int) -> TaskFuture | None:
        with self._lock:
            return self._pending.pop(task_id, None)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            futures = list(self._pending.values())
            self._pending.clear()
        for future in futures:
            if not future.done():
                future.set_exception(error)


def _command(fn: str | Callable[..., str], args: tuple[Any, ...]) -> str:
    if isinstance(fn, str):
        return fn.format(*(shlex.quote(str(arg)) for arg in args))
    command = fn(*args)
    if not isinstance(command, str):
        raise TypeError(f"the function given to Executor.map must return a command line (str), not {command!r}")
    return command

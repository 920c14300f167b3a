"""Which workers hold an open session stream, and what a session's end says about its worker.

A worker process that dies (killed, crashed, its job ended under it) closes its connection, and its session stream
ends without a goodbye: that worker is gone now, and waiting the worker timeout for it only leaves its tasks stuck.
A silent node (frozen, or cut off by the network) closes nothing; the worker timeout still finds that one. A worker
that never opened a session (a seed-protocol worker, which only pings) is never judged here.

A worker that leaves on purpose says goodbye first. Without one, the end of the stream is taken as the worker's end:
grpc shows the server a peer's cancelled call, its dropped connection and a plain end of its messages alike.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("tqhpc.server")

T = TypeVar("T")


class SessionEnd(enum.Enum):
    """How a session stream ended, as its handler saw it."""

    GOODBYE = "goodbye"  # the worker said it is leaving on purpose
    REFUSED = "refused"  # the server ended it over a bad message: the connection is fine
    BROKEN = "broken"  # it ended without a goodbye: the worker's call or connection closed, its process is gone

    @property
    def worker_gone(self) -> bool:
        return self is SessionEnd.BROKEN


class SessionBook:
    """Counts open sessions per worker and retires a worker whose last session broke.

    A worker that reconnects (after a network hiccup or a server restart) may briefly hold two sessions, the old one
    not yet noticed as dead: only the end of its last open one says the worker is gone.
    """

    def __init__(self, retire_lost: Callable[[int, str], Awaitable[object]]) -> None:
        self._retire_lost = retire_lost
        self._open: Counter[int] = Counter()
        self._retiring: set[asyncio.Task[object]] = set()
        self._closing = asyncio.Event()
        self._readers: set[asyncio.Task[object]] = set()
        self._seen: dict[int, float] = {}

    @property
    def closing(self) -> bool:
        """True once the server shuts down: it ends every stream itself, which says nothing about the workers."""
        return self._closing.is_set()

    def close_all(self) -> None:
        """Shutting down: every open session ends now (see `reading`), and no worker is retired for it."""
        self._closing.set()
        for reader in list(self._readers):
            reader.cancel()

    def reading(self, reader: asyncio.Task[T]) -> asyncio.Task[T]:
        """The task reading a session, cancelled when the server shuts down.

        A session never ends by itself; without this, stopping the server would wait out its whole grace period for
        streams that will not finish. Cancelling the reader once costs nothing per message, where racing every read
        against the shutdown would cost a future and a wait for each.
        """
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        if self.closing:
            reader.cancel()
        return reader

    def seen(self, worker_id: int, when: float) -> None:
        """A heartbeat with nothing else in it: kept here, not written to the store for each one (an idle worker
        beats every second, hundreds of workers would keep the store busy), and written down by `take_seen`."""
        self._seen[worker_id] = when

    def take_seen(self) -> dict[int, float]:
        """The heartbeats kept since the last call, for the store (before the look for silent workers)."""
        seen, self._seen = self._seen, {}
        return seen

    def last_seen(self, worker_id: int) -> float | None:
        return self._seen.get(worker_id)

    def opened(self, worker_id: int) -> None:
        self._open[worker_id] += 1

    def is_open(self, worker_id: int) -> bool:
        return self._open[worker_id] > 0

    def ended(self, worker_id: int, how: SessionEnd) -> None:
        """Note the end of one session; retire the worker if that was its last and its connection broke.

        Called from the stream handler's cleanup, which may itself be running under cancellation, so the retirement
        runs as a task of its own rather than in the handler.
        """
        self._open[worker_id] -= 1
        if self._open[worker_id] <= 0:
            del self._open[worker_id]
        if not how.worker_gone or self.closing or self.is_open(worker_id):
            log.info("worker %d: session ended (%s)", worker_id, how.value)
            return
        reason = f"worker {worker_id} was lost: its connection to the server closed"
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self._retire_lost(worker_id, reason))
        self._retiring.add(task)
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[object]) -> None:
        self._retiring.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("retiring a worker whose session broke failed", exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for retirements under way, so that the store is not closed under them at shutdown."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


__all__ = ["SessionBook", "SessionEnd"]

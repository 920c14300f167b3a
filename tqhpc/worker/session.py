"""The worker's session stream: opened once registered, kept open while it lives, closed with a goodbye.

The open stream is how the server knows this process is alive between pings: if the process dies, its connection
closes and the server hands the tasks on at once instead of waiting out the worker timeout. So the stream must stay
open while the worker runs (it is reopened after a network break or a server restart, through whatever address
access.toml names by then), and a worker leaving on purpose says goodbye first, or the server would take its leaving
for a death and count crashes against its tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc

from .._proto import pb
from .connection import Connection

log = logging.getLogger("tqhpc.worker")

DISOWNED = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})
"""The server no longer counts this worker as live (deleted, stopped, or declared lost)."""
GOODBYE_SECONDS = 5.0
"""How long a leaving worker waits for the server to take its goodbye before it simply closes."""
FIRST_REOPEN_DELAY = 0.1
MAX_REOPEN_DELAY = 5.0
SERVER_FAILED = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
"""The server failed to answer (its storage failing, say): worth another try later, not the end of the worker."""
STEADY_SECONDS = MAX_REOPEN_DELAY
"""A session the server ended with a failure after being open this long is reopened at once, as after a break."""


class Listener(Protocol):
    """Who hears what arrives on the session: the worker (pushed work) and its reporter (open, closed, acks)."""

    def opened(self, welcome: pb.SessionWelcome) -> None: ...
    def closed(self) -> None: ...
    def acknowledged(self, ack: pb.ReportAck) -> None: ...


class Session:
    """One worker's session; `refused` says why the server would not have it, once it would not."""

    def __init__(
        self,
        connection: Connection,
        on_refused: Callable[[], None],
        on_push: Callable[[pb.TaskPush], None] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.connection = connection
        self.on_refused = on_refused
        self.on_push = on_push
        self.listener = listener
        self.refused = ""
        self._task: asyncio.Task[None] | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._outbox: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        self._leaving = False
        self.opened = asyncio.Event()
        """Set while the server has welcomed the current stream."""
        self._opened_at = 0.0
        self.server_timeout = 0.0
        """The server's worker timeout, as its welcome implies (it asks for heartbeats 4 times per timeout)."""
        self._heard_at: float | None = None

    def heard(self) -> None:
        """The server answered (on the session, or a ping while none is open)."""
        self._heard_at = _now()

    def silent_for(self) -> float:
        """Seconds since the server last said anything on a session (0 before the first welcome)."""
        return 0.0 if self._heard_at is None else _now() - self._heard_at

    def send(self, message: pb.WorkerMessage) -> bool:
        """Put a message on the open stream; False when no stream is open (it is then not sent)."""
        if not self.opened.is_set() or self._leaving:
            return False
        self._outbox.put_nowait(message)
        return True

    def start(self, worker_id: int) -> None:
        """Open the session of `worker_id` in the background, dropping one opened for an earlier id."""
        self._drop()
        self.refused, self._leaving = "", False
        self._task = asyncio.create_task(self._keep_open(worker_id))

    async def close(self, reason: str) -> None:
        """Leave on purpose: say goodbye, wait for the server to end the stream, then stop."""
        self._leaving = True
        call, task = self._call, self._task
        if call is not None and task is not None and not call.done():
            self._outbox.put_nowait(pb.WorkerMessage(goodbye=pb.WorkerGoodbye(reason=reason)))
            self._outbox.put_nowait(None)
            done, _ = await asyncio.wait({task}, timeout=GOODBYE_SECONDS)  # it reads on until the server ends it
            if not done:
                log.info("the server did not take our goodbye within %g s; closing the session anyway", GOODBYE_SECONDS)
        self._drop()

    def abort(self) -> None:
        """End the session without a goodbye: the server takes this worker as gone and requeues its tasks now."""
        self._leaving = True
        self._drop()

    def _drop(self) -> None:
        self._outbox.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.opened.clear()

    async def _keep_open(self, worker_id: int) -> None:
        delay = FIRST_REOPEN_DELAY
        while True:
            ended: grpc.aio.AioRpcError | None = None
            try:
                await self._hold(worker_id)
            except grpc.aio.AioRpcError as err:
                ended = err
            finally:
                fresh = self._fresh_break(ended)
                self.opened.clear()
            if fresh:
                delay = FIRST_REOPEN_DELAY
            if self._leaving:
                return
            if ended is None:
                log.warning("the server ended the session of worker %d; opening it again", worker_id)
            elif not self._worth_reopening(worker_id, ended, delay):
                return
            await asyncio.sleep(delay)
            self.connection.refresh()  # the server may have moved: reopen where access.toml says it is now
            delay = min(delay * 2, MAX_REOPEN_DELAY)

    def _fresh_break(self, ended: grpc.aio.AioRpcError | None) -> bool:
        """Whether the session that just ended met a fresh trouble, to be tried again at once.

        One the server ends with a failure of its own soon after welcoming it is likely to meet the same failure
        again (a server whose store fails ends each session at its first report): the wait before the next try
        keeps growing then, so such a server is not asked ten times a second.
        """
        if not self.opened.is_set():
            return False  # never opened: the server is away, and the wait grows
        failed = ended is not None and ended.code() in SERVER_FAILED
        return not failed or _now() - self._opened_at >= STEADY_SECONDS

    def _worth_reopening(self, worker_id: int, err: grpc.aio.AioRpcError, delay: float) -> bool:
        code = err.code()
        if code in DISOWNED:
            self.refused = f"the server disowned worker {worker_id}: {err.details()}"
            self.on_refused()
            return False
        if code in {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT}:
            log.error("the server cannot keep a session for this worker (%s): %s", code.name, err.details())
            log.error("working on pings alone: if this worker dies, its tasks wait for the worker timeout")
            return False
        log.warning("the session of worker %d broke (%s); opening it again in %.1f s", worker_id, _why(err), delay)
        return True

    async def _hold(self, worker_id: int) -> None:
        """Say hello and hold the stream open until it ends; AioRpcError says how, if it did not end cleanly."""
        # Messages go out through a queue we own and end with None: grpc's own write() leaves a task pending
        # forever behind a call that failed, and this call is opened again and again while the server is away.
        self._outbox = outbox = asyncio.Queue()
        outbox.put_nowait(pb.WorkerMessage(hello=pb.WorkerHello(worker_id=worker_id)))
        call = self.connection.stub.WorkerSession(_sent_from(outbox))
        self._call = call
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                self._take(worker_id, message)
        finally:
            if self.listener is not None:
                self.listener.closed()
            outbox.put_nowait(None)

    def _take(self, worker_id: int, message: pb.ServerMessage) -> None:
        kind = message.WhichOneof("kind")
        self.heard()
        if kind == "welcome":
            if not self.opened.is_set():
                log.info("worker %d: session open", worker_id)
                self._opened_at = _now()
            self.opened.set()
            self.server_timeout = HEARTBEATS_PER_TIMEOUT * message.welcome.heartbeat_seconds
            if self.listener is not None:
                self.listener.opened(message.welcome)
        elif kind == "push":
            self._pushed(message.push)
        elif kind == "ack":
            if message.ack.HasField("push"):
                self._pushed(message.ack.push)  # work the report made room for, sent with its answer
            if self.listener is not None:
                self.listener.acknowledged(message.ack)
        # Other kinds come from a newer server: ignored.

    def _pushed(self, push: pb.TaskPush) -> None:
        if self.on_push is not None:
            self.on_push(push)


async def _sent_from(outbox: asyncio.Queue[pb.WorkerMessage | None]) -> AsyncIterator[pb.WorkerMessage]:
    """The messages put in `outbox`, until None."""
    while (message := await outbox.get()) is not None:
        yield message


HEARTBEATS_PER_TIMEOUT = 4
"""The server asks for a heartbeat four times per worker timeout."""


def _now() -> float:
    return asyncio.get_running_loop().time()


def _why(err: grpc.aio.AioRpcError) -> str:
    return f"{err.code().name}: {err.details()}"


__all__ = ["SERVER_FAILED", "Session"]

"""Calls to the server that survive a server restart or a network hiccup, and stop at refusals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

log = logging.getLogger("tqhpc.worker")

T = TypeVar("T")
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
"""Worth another try: a server restarting cancels the calls in flight, then refuses connections for a while."""
CALL_TIMEOUT_SECONDS = 60.0


class ServerGone(RuntimeError):
    """The server did not answer for longer than the worker is willing to wait."""


async def with_retry(
    call: Callable[[], Awaitable[T]],
    what: str,
    give_up_after: Callable[[], float],
    on_transient: Callable[[], None] | None = None,
) -> T:
    """Retry transient failures with backoff for up to `give_up_after` seconds; other errors go to the caller.

    `give_up_after` is asked again at each retry, so a worker told to hurry stops retrying calls already waiting.
    `on_transient` runs before each retry (the worker re-reads access.toml there, in case the server moved).
    """
    start = time.monotonic()
    delay = 0.1
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            if err.code() not in TRANSIENT:
                raise
            waited = time.monotonic() - start
            if waited + delay > give_up_after():
                raise ServerGone(f"{what}: no answer from the server for {waited:.0f} s ({err.details()})") from err
            log.warning("%s: %s; retrying in %.1f s", what, err.details(), delay)
            await asyncio.sleep(delay)
            if on_transient is not None:
                on_transient()
            delay = min(delay * 2, 5.0)

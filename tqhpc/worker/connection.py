"""The worker's link to the server, which outlives server restarts.

A server restarted on another port, or with a new state directory's token, rewrites access.toml; when calls stop
getting through, the worker reads the file again and reconnects, instead of dying with its tasks.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from grpc import aio

from ..access import Access, AccessError, read_access
from ..channel import async_stub
from .retry import CALL_TIMEOUT_SECONDS, with_retry

log = logging.getLogger("tqhpc.worker")


class Connection:
    def __init__(self, access: Access, access_file: Path | None, give_up_after: float) -> None:
        self.access = access
        self.access_file = access_file
        self.give_up_after = give_up_after
        self.channel: aio.Channel
        self.stub: Any  # rpc.TaskQueueStub's methods, each call with the token
        self.channel, self.stub = async_stub(access)
        self._old_channels: list[aio.Channel] = []

    async def call(self, method: str, request: Any, what: str) -> Any:
        """A unary call by method name, so a retry after a reconnect goes through the new channel."""
        return await with_retry(
            lambda: getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_SECONDS),
            what,
            lambda: self.give_up_after,
            on_transient=self.refresh,
        )

    async def send_stream(self, method: str, messages: list[Any], what: str) -> Any:
        return await with_retry(
            lambda: getattr(self.stub, method)(iter(messages), timeout=CALL_TIMEOUT_SECONDS),
            what,
            lambda: self.give_up_after,
            on_transient=self.refresh,
        )

    def refresh(self) -> None:
        """Reconnect if access.toml now names another address, token or certificate, or plaintext."""
        if self.access_file is None:
            return
        with contextlib.suppress(AccessError):
            current = read_access(self.access_file)
            if current != self.access:
                log.info("the server moved to %s; reconnecting", current.address)
                if current.tls != self.access.tls:  # its owner restarted it with or without --insecure
                    log.warning(
                        "the server's access file now says %s",
                        "TLS, with a pinned certificate" if current.tls else "plaintext (tls = false, --insecure)",
                    )
                self._old_channels.append(self.channel)  # calls in flight may still use it
                self.access = current
                self.channel, self.stub = async_stub(current)

    async def close(self) -> None:
        for channel in [*self._old_channels, self.channel]:
            await channel.close()

"""Channels to the server that carry the bearer token on every call, for the blocking and the asyncio API."""

from __future__ import annotations

from typing import Any

import grpc
from grpc import aio

from ._proto import rpc
from .access import Access

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Workers sit idle between pings for long stretches; keepalives keep firewalls from silently dropping us.
    ("grpc.keepalive_time_ms", 60_000),
]


class _AuthorizedMethod:
    """One method of the stub, with the token in every call's metadata."""

    def __init__(self, method: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._method = method
        self._metadata = metadata

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self._method(request, metadata=self._metadata, **kwargs)


class _AuthorizedStub:
    """A stub whose calls carry the token.

    Not an interceptor: an intercepted channel wraps every call in extra tasks and queues, a cost paid
    on each message of a worker's session stream; metadata given with the call costs nothing per message."""

    def __init__(self, stub: rpc.TaskQueueStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> _AuthorizedMethod:
        method = _AuthorizedMethod(getattr(self._stub, name), self._metadata)
        setattr(self, name, method)
        return method


def sync_stub(access: Access) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(access.address, options=CHANNEL_OPTIONS)
    return channel, _AuthorizedStub(rpc.TaskQueueStub(channel), access.metadata)


def async_stub(access: Access) -> tuple[aio.Channel, Any]:
    channel = aio.insecure_channel(access.address, options=CHANNEL_OPTIONS)
    return channel, _AuthorizedStub(rpc.TaskQueueStub(channel), access.metadata)

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


def _with_token(details: Any, metadata: tuple[tuple[str, str], ...]) -> Any:
    extra = aio.Metadata(*(tuple(details.metadata or ()) + metadata))
    return details._replace(metadata=extra)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: float | None, metadata: Any, credentials: Any, wait_for_ready: Any):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, None


class _SyncToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            list(details.metadata or ()) + list(self.metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):  # noqa: ANN001
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # noqa: ANN001
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # noqa: ANN001
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # noqa: ANN001
        return continuation(self._details(client_call_details), request_iterator)


class _AsyncToken:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata


# grpc.aio files an interceptor under the first of the four kinds it is an instance of, so each kind is its own class.
class _AsyncUnaryUnaryToken(_AsyncToken, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # noqa: ANN001
        return await continuation(_with_token(client_call_details, self.metadata), request)


class _AsyncUnaryStreamToken(_AsyncToken, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # noqa: ANN001
        return await continuation(_with_token(client_call_details, self.metadata), request)


class _AsyncStreamUnaryToken(_AsyncToken, aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # noqa: ANN001
        return await continuation(_with_token(client_call_details, self.metadata), request_iterator)


class _AsyncStreamStreamToken(_AsyncToken, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # noqa: ANN001
        return await continuation(_with_token(client_call_details, self.metadata), request_iterator)


def sync_stub(access: Access) -> tuple[grpc.Channel, rpc.TaskQueueStub]:
    channel = grpc.intercept_channel(
        grpc.insecure_channel(access.address, options=CHANNEL_OPTIONS), _SyncToken(access.metadata)
    )
    return channel, rpc.TaskQueueStub(channel)


def async_stub(access: Access) -> tuple[aio.Channel, rpc.TaskQueueStub]:
    channel = aio.insecure_channel(
        access.address,
        options=CHANNEL_OPTIONS,
        interceptors=[
            kind(access.metadata)
            for kind in (_AsyncUnaryUnaryToken, _AsyncUnaryStreamToken, _AsyncStreamUnaryToken, _AsyncStreamStreamToken)
        ],
    )
    return channel, rpc.TaskQueueStub(channel)

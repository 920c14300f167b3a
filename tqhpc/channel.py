"""Channels to the server that carry the bearer token on every call, for the blocking and the asyncio API.

A channel is TLS trusting only the certificate pinned in access.toml, or plaintext only where access.toml says
`tls = false` (a server started with `--insecure`); never the one in place of the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from grpc import aio

from ._proto import rpc
from .access import CERTIFICATE_NAME, Access

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


def _pinned(access: Access, options: Sequence[tuple[str, Any]]) -> tuple[grpc.ChannelCredentials, list[Any]]:
    """Credentials that trust the pinned certificate alone, and the options that check its fixed name in place of
    the host name: cluster nodes reach the login node by many names, and only that one certificate is trusted."""
    assert access.certificate is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=access.certificate.encode())
    return credentials, [*options, ("grpc.ssl_target_name_override", CERTIFICATE_NAME)]


def open_channel(access: Access, options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS) -> grpc.Channel:
    """A blocking channel to the server `access` names, as access.toml says to talk to it; calls on it carry no
    token (see `sync_stub` for a stub that adds it)."""
    if not access.tls:
        return grpc.insecure_channel(access.address, options=options)
    credentials, pinned_options = _pinned(access, options)
    return grpc.secure_channel(access.address, credentials, options=pinned_options)


def open_aio_channel(access: Access, options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS) -> aio.Channel:
    """The asyncio twin of `open_channel`."""
    if not access.tls:
        return aio.insecure_channel(access.address, options=options)
    credentials, pinned_options = _pinned(access, options)
    return aio.secure_channel(access.address, credentials, options=pinned_options)


def sync_stub(access: Access) -> tuple[grpc.Channel, Any]:
    channel = open_channel(access)
    return channel, _AuthorizedStub(rpc.TaskQueueStub(channel), access.metadata)


def async_stub(access: Access) -> tuple[aio.Channel, Any]:
    channel = open_aio_channel(access)
    return channel, _AuthorizedStub(rpc.TaskQueueStub(channel), access.metadata)


def is_handshake_failure(details: str | None) -> bool:
    """Whether an UNAVAILABLE call failed in the TLS handshake rather than on a server that is not there."""
    text = (details or "").lower()
    return "handshake" in text or "certificate_verify_failed" in text or "ssl_error" in text

"""Bearer-token check on every RPC: the login node is shared, and only the owner of access.toml may talk to us."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc
from grpc import aio

SCHEME = "bearer"


def presented_token(authorization: str) -> str | None:
    """The token of an `authorization` value `<scheme> <token>`, or None when the scheme is not bearer.

    The scheme is matched in any case (RFC 7235: scitq sends `Bearer`, tqhpc `bearer`) and may be followed by
    several spaces; the token itself is returned exactly as sent, since it is compared byte for byte.
    """
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != SCHEME:
        return None
    return token.lstrip(" ")


class TokenInterceptor(aio.ServerInterceptor):
    """Refuses every call without the token, but those to `open_services` (full names, such as the standard health
    service, which monitoring calls without secrets)."""

    def __init__(self, token: str, open_services: frozenset[str] = frozenset()) -> None:
        self._expected = token.encode()
        self._open = open_services

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler_call_details.method.lstrip("/").partition("/")[0] in self._open:  # "/package.Service/Method"
            return handler
        given = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode(errors="replace")
        token = presented_token(given)
        if handler is None or (token is not None and hmac.compare_digest(token.encode(), self._expected)):
            return handler
        if not given:
            message = (
                "missing authorization metadata: send 'authorization: bearer <token>' with the token from access.toml"
            )
        elif token is None:
            message = (
                "authorization metadata must be 'bearer <token>' (the scheme in any case) with the token from "
                "access.toml"
            )
        else:
            message = "wrong token: use the one in the server's access.toml"
        return _refusing(handler, message)


def _refusing(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def refuse(_request: object, context: aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(_request: object, context: aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - abort raises

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)

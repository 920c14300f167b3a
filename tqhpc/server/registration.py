"""Register the servicer with request decoding that cannot fail silently.

With the generated registration, a request that protobuf cannot parse (a string field holding bad UTF-8, say)
fails inside grpc before our code runs and the client gets UNKNOWN with a parser traceback in words; in a
SendTaskLogs stream the good chunks before it are lost with it. Here undecodable requests arrive as `Undecodable`
values, so handlers answer INVALID_ARGUMENT with a plain message and keep the rest of a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from .._proto import pb

SERVICE = pb.DESCRIPTOR.services_by_name["TaskQueue"]


@dataclass(frozen=True)
class Undecodable:
    """A request that is not a valid message of its type; `problem` says why, for the client."""

    type_name: str
    problem: str

    def describe(self) -> str:
        hint = ""
        if "UTF-8" in self.problem:
            hint = " (strings must be UTF-8" + (
                "; send raw output in log_bytes)" if self.type_name.endswith("TaskLog") else ")"
            )
        return f"the request is not a valid {self.type_name}: {self.problem}{hint}"


def _tolerant(message_class: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return message_class.FromString(data)
        except DecodeError as err:
            return Undecodable(message_class.DESCRIPTOR.full_name, str(err).rsplit(": ", 1)[-1])

    return deserialize


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(servicer: Any, server: grpc.aio.Server) -> None:
    handlers = {}
    for method in SERVICE.methods:
        make = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=_tolerant(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))

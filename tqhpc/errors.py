"""Domain errors, each mapped to one gRPC status code by the server and shown to users as one clear line."""

from __future__ import annotations

import grpc


class TqhpcError(Exception):
    """Base of the errors whose message is written for the user."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(TqhpcError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TqhpcError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(TqhpcError):
    code = grpc.StatusCode.FAILED_PRECONDITION

"""Generated protobuf and gRPC code; regenerate with `python scripts/generate_proto.py`, never edit by hand."""

from . import taskqueue_pb2 as pb
from . import taskqueue_pb2_grpc as rpc

__all__ = ["pb", "rpc"]

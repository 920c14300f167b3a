"""tqhpc: a task queue that bridges researchers and HPC clusters."""

import os

# gRPC's core prints an INFO line to stderr for each failed TLS handshake, before tqhpc reports the failure in one
# clear line of its own; errors it still prints. Set before anything imports grpc; a value the user set is kept.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from .client import Client, ClientError, LogChunk, TaskInfo, TaskResult, WorkerInfo
from .executor import Executor, TaskFuture
from .records import ResourceUsage
from .specs import TaskSpec
from .status import Status
from .sweep import Sweep

__version__ = "0.1.0"
__all__ = [
    "Client",
    "ClientError",
    "Executor",
    "LogChunk",
    "ResourceUsage",
    "Status",
    "Sweep",
    "TaskFuture",
    "TaskInfo",
    "TaskResult",
    "TaskSpec",
    "WorkerInfo",
    "__version__",
]

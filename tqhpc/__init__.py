"""tqhpc: a task queue that bridges researchers and HPC clusters."""

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

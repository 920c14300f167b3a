"""tqhpc: a task queue that bridges researchers and HPC clusters."""

from .client import Client, ClientError, LogChunk, TaskInfo, WorkerInfo
from .status import Status

__version__ = "0.1.0"
__all__ = ["Client", "ClientError", "LogChunk", "Status", "TaskInfo", "WorkerInfo", "__version__"]

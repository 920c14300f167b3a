"""The SQLite store: schema, the single-writer database, and the operations the server runs through it."""

from .database import Database
from .records import TaskRecord, WorkerRecord

__all__ = ["Database", "TaskRecord", "WorkerRecord"]

"""The SQLite store: schema, the single-writer database, and the operations the server runs through it."""

from .database import Database

__all__ = ["Database"]

"""Checks on what clients send, so bad input is refused with a message instead of failing later on a node."""

from __future__ import annotations

import math
from typing import TypeVar

from ..errors import InvalidArgument

R = TypeVar("R")

MAX_COMMAND_BYTES = 128 * 1024 - 1
"""A task runs as `sh -c COMMAND`; Linux refuses any single argument of 128 KiB or more (MAX_ARG_STRLEN)."""
MAX_CONTAINER_BYTES = 4096
MAX_NAME_BYTES = 256
MAX_PATH_BYTES = 4096
"""Linux's PATH_MAX: no longer path can be a working directory."""


def command(text: str) -> str:
    if not text.strip():
        raise InvalidArgument("the command is empty")
    if "\0" in text:
        raise InvalidArgument("the command contains a NUL byte, which no shell can run")
    size = len(text.encode())
    if size > MAX_COMMAND_BYTES:
        raise InvalidArgument(
            f"the command is {size} bytes; at most {MAX_COMMAND_BYTES} fit in one argument (Linux's "
            "MAX_ARG_STRLEN): put long inputs in a file and pass its path"
        )
    return text


def container(text: str) -> str:
    if "\0" in text or len(text.encode()) > MAX_CONTAINER_BYTES:
        raise InvalidArgument(f"the container must be an image path or URI of at most {MAX_CONTAINER_BYTES} bytes")
    return text.strip()


def name(text: str, what: str = "name") -> str:
    if "\0" in text or len(text.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"the {what} must be at most {MAX_NAME_BYTES} bytes, without NUL")
    return text.strip()


def cwd(text: str) -> str:
    """A task's working directory: absolute, because only the client knows what a relative one was relative to."""
    if "\0" in text or len(text.encode()) > MAX_PATH_BYTES:
        raise InvalidArgument(f"the working directory must be a path of at most {MAX_PATH_BYTES} bytes, without NUL")
    if not text.startswith("/"):
        raise InvalidArgument(f"the working directory must be an absolute path, not {text!r}")
    return text


def timeout(seconds: float) -> float:
    """A task's wall-clock limit; 0 means none."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument(f"the timeout must be a finite number of seconds, 0 or more (0: none), not {seconds}")
    return seconds


MAX_MEMORY_LIMIT = 2**63 - 1
"""SQLite stores integers as signed 64-bit: a larger ceiling could not be kept, and no machine has that much."""


def memory_limit(size: int) -> int:
    """A task's RSS ceiling in bytes; 0 means none."""
    if size > MAX_MEMORY_LIMIT:
        raise InvalidArgument(f"the memory limit must be at most {MAX_MEMORY_LIMIT} bytes, not {size}")
    return size


def time_request(seconds: float) -> float:
    """A declared run time is a finite number of seconds, 0 meaning not declared."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument(f"time_request must be a number of seconds, 0 or more, not {seconds!r}")
    return seconds


SQLITE_INTEGER_MAX = 2**63 - 1


def storable(record: R, what: str) -> R:
    """A worker's figures (usage, host state) as the store can keep them: protobuf's uint64 goes past SQLite's
    signed 64-bit integers, and no real count of bytes does."""
    for name, value in vars(record).items():
        if isinstance(value, int) and not isinstance(value, bool) and value > SQLITE_INTEGER_MAX:
            raise InvalidArgument(f"{what}: {name} = {value} is out of range (at most {SQLITE_INTEGER_MAX})")
    return record

"""The lock that keeps two servers off one state directory, and the note that names its holder.

filelock's lock file is truncated by every attempt to take it, so who holds it is written to `server.json` beside
it, only once the lock is ours; a second server reads that note to say who it lost to.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = "server.lock"
HOLDER_FILE = "server.json"


class StateDirBusy(RuntimeError):
    pass


class StateDirLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = FileLock(state_dir / LOCK_FILE, timeout=0)

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            raise StateDirBusy(f"the state directory {self.state_dir} is in use by {self.describe_holder()}") from None

    def record(self, address: str) -> None:
        """Note who holds the lock; call after acquire, once the address is known."""
        note = {"pid": os.getpid(), "host": socket.gethostname(), "address": address, "since": time.time()}
        path = self.state_dir / HOLDER_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(note))
        os.replace(tmp, path)

    def describe_holder(self) -> str:
        try:
            note = json.loads((self.state_dir / HOLDER_FILE).read_text())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(note["since"]))
            return f"tqhpc server pid {note['pid']} on {note['host']}, listening on {note['address']}, since {since}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another tqhpc server (it has not yet written server.json)"

    def release(self) -> None:
        (self.state_dir / HOLDER_FILE).unlink(missing_ok=True)
        self._lock.release()

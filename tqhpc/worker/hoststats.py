"""The worker's host at a glance, sent with its heartbeats so `tqhpc workers` shows load and memory of each node."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import psutil

from ..records import WorkerStats

MAX_AGE_SECONDS = 5.0
"""How long a sample of the host's state stands; a change in the count of running tasks is sent at once. Load and
memory drift slowly, and a fresh sample with every heartbeat would make each idle worker's heartbeat a store write
on the server, every second."""


class HostStats:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.last: WorkerStats | None = None
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def changed(self, running_tasks: int) -> WorkerStats | None:
        """A new state to send with this ping, or None when the last one sent is recent and still true."""
        last = self.last
        if last is not None and time.time() - last.sampled_at < MAX_AGE_SECONDS:
            if last.running_tasks == running_tasks:
                return None
            self.last = dataclasses.replace(last, running_tasks=running_tasks)
            return self.last
        self.last = self.sample(running_tasks)
        return self.last

    def sample(self, running_tasks: int) -> WorkerStats:
        """A few reads of /proc and one statvfs."""
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        return WorkerStats(
            cpu_percent=psutil.cpu_percent(None),  # since the previous ping
            load1=load1,
            load5=load5,
            load15=load15,
            memory_used=memory.total - memory.available,
            memory_available=memory.available,
            disk_free=_disk_free(self.scratch),
            running_tasks=running_tasks,
            sampled_at=time.time(),
        )


def _disk_free(path: Path) -> int:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return psutil.disk_usage(str(candidate)).free
        except OSError:
            continue
    return 0

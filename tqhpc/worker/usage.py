"""What a task's process tree costs, sampled with psutil while it runs and completed by the kernel's own count.

Sampling alone misses what happens between two samples: a child that burns CPU and exits before the next look,
or a memory peak that comes and goes. So each process keeps the highest counters ever seen for it (an exited child
still counts with what it had at its last sample), each process's peak RSS comes from the kernel's high-water mark
(VmHWM) rather than from our samples, and at the end the root's own `wait4` resource usage (which includes every
descendant it waited for) is taken when it is larger. Its ru_maxrss counts only above the worker's own peak:
Linux charges the child with the memory of the process that forked it. All figures are lower bounds, close ones;
the peak RSS of a task too short to be sampled (under 50 ms) and smaller than the worker is unknown and shows 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import socket
import threading
import time
from dataclasses import dataclass, field

import psutil

from ..records import ResourceUsage

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ProcessLookupError, FileNotFoundError)


@dataclass
class _Seen:
    """The highest counters seen for one process (they only grow while it lives)."""

    process: psutil.Process
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    peak_rss: int = 0


@dataclass
class TreeSampler:
    """Samples one task's process tree: the root (the shell or the apptainer starter) and all its descendants."""

    root_pid: int
    started_at: float = field(default_factory=time.time)
    seen: dict[tuple[int, float], _Seen] = field(default_factory=dict)
    samples: int = 0
    peak_rss: int = 0
    last_rss: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Samples are taken in a thread (reading /proc is blocking I/O) while the loop may read the figures."""

    def tree(self) -> list[psutil.Process]:
        """The root and its descendants now (empty once the root is gone)."""
        try:
            root = psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except _GONE:
            return []

    def sample(self) -> int:
        """Look at every process of the tree once; return the tree's RSS now (the sum over its processes)."""
        with self.lock:
            return self._sample()

    def _sample(self) -> int:
        rss_now = 0
        tree = self.tree()
        for process in tree:
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    seen = self.seen.setdefault(key, _Seen(process))
                    times = process.cpu_times()
                    rss = process.memory_info().rss
                    try:
                        io = process.io_counters()
                        seen.read_bytes = max(seen.read_bytes, io.read_bytes)
                        seen.write_bytes = max(seen.write_bytes, io.write_bytes)
                    except (AttributeError, *_GONE):
                        pass
            except _GONE:
                continue
            seen.cpu_user = max(seen.cpu_user, times.user)
            seen.cpu_system = max(seen.cpu_system, times.system)
            seen.peak_rss = max(seen.peak_rss, rss, high_water_mark(process.pid))
            rss_now += rss
        if rss_now:  # a tree that is gone (or only a zombie) is no sample: the last RSS stays the last real one
            self.samples += 1
            self.last_rss = rss_now
        self.peak_rss = max(self.peak_rss, rss_now)
        return rss_now

    def alive(self) -> list[psutil.Process]:
        """Every process of the tree that still runs, including those that left it (setsid, reparented orphans)."""
        alive = {p.pid: p for p in self.tree()}
        with self.lock:
            seen_now = list(self.seen.values())
        for seen in seen_now:
            with contextlib.suppress(*_GONE):
                if seen.process.is_running() and seen.process.status() != psutil.STATUS_ZOMBIE:
                    alive.setdefault(seen.process.pid, seen.process)
        return list(alive.values())

    def usage(
        self,
        *,
        rusage: resource.struct_rusage | None = None,
        ended_at: float | None = None,
        parent_peak: int = 0,
    ) -> ResourceUsage:
        """The usage so far; with the root's `wait4` rusage, the final summary.

        `parent_peak` is the worker's own peak RSS when it started the task: Linux counts the memory of the process
        that forked the root into the root's ru_maxrss, so ru_maxrss says something about the task only above it.
        """
        with self.lock:
            return self._usage(rusage, ended_at, parent_peak)

    def _usage(self, rusage: resource.struct_rusage | None, ended_at: float | None, parent_peak: int) -> ResourceUsage:
        cpu_user = sum(s.cpu_user for s in self.seen.values())
        cpu_system = sum(s.cpu_system for s in self.seen.values())
        read_bytes = sum(s.read_bytes for s in self.seen.values())
        write_bytes = sum(s.write_bytes for s in self.seen.values())
        peak_rss = max([self.peak_rss, *(s.peak_rss for s in self.seen.values())])
        if rusage is not None:
            cpu_user = max(cpu_user, rusage.ru_utime)
            cpu_system = max(cpu_system, rusage.ru_stime)
            if rusage.ru_maxrss * 1024 > parent_peak:  # kilobytes on Linux
                peak_rss = max(peak_rss, rusage.ru_maxrss * 1024)
            read_bytes = max(read_bytes, rusage.ru_inblock * 512)
            write_bytes = max(write_bytes, rusage.ru_oublock * 512)
        end = ended_at if ended_at is not None else time.time()
        return ResourceUsage(
            started_at=self.started_at,
            ended_at=ended_at or 0.0,
            wall_time=max(0.0, end - self.started_at),
            cpu_user=cpu_user,
            cpu_system=cpu_system,
            peak_rss=peak_rss,
            last_rss=self.last_rss,
            read_bytes=read_bytes,
            write_bytes=write_bytes,
            samples=self.samples,
            final=rusage is not None,
        )


def attempt_start(attempt: int, worker_id: int, worker_name: str) -> ResourceUsage:
    """Where and when an attempt runs: the part of its usage record known before it starts."""
    return ResourceUsage(
        attempt=attempt,
        worker_id=worker_id,
        worker_name=worker_name,
        hostname=socket.gethostname(),
        slurm_job_id=os.environ.get("SLURM_JOB_ID", ""),
        started_at=time.time(),
    )


def placed(usage: ResourceUsage, start: ResourceUsage) -> ResourceUsage:
    """Figures measured by the sampler, with where and when the attempt ran (its wall time counts from `start`,
    which for a container task includes getting the image and starting the container)."""
    return dataclasses.replace(
        usage,
        attempt=start.attempt,
        worker_id=start.worker_id,
        worker_name=start.worker_name,
        hostname=start.hostname,
        slurm_job_id=start.slurm_job_id,
        started_at=start.started_at,
        wall_time=(usage.ended_at or time.time()) - start.started_at,
    )


_own_peak: tuple[float, int] = (-1.0, 0)  # (when it was read, monotonic; the worker's own VmHWM)
OWN_PEAK_SECONDS = 1.0


def own_high_water_mark() -> int:
    """The worker's own peak RSS, read at most once a second: it only grows, slowly, and reading /proc for every
    short task would cost more than the task."""
    global _own_peak
    now = time.monotonic()
    if now - _own_peak[0] >= OWN_PEAK_SECONDS:
        _own_peak = (now, high_water_mark(os.getpid()))
    return _own_peak[1]


def high_water_mark(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes, which the kernel keeps between our samples."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0

"""What a sweep's tasks cost, summed up: percentiles of wall time, CPU time, CPU efficiency and peak RSS, the
failures by kind, and the memory and time to ask for next time.

Slurm's `seff` says this for one job; a sweep of ten thousand tasks needs it over all of them. The tasks are read
from the streamed listing a page at a time, and only the few numbers each one contributes are kept (in arrays of
machine numbers, about 40 bytes a task), so a million tasks never sit in memory as records or messages.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._proto import pb
from .plural import plural
from .status import Status

PERCENTILES = (50, 95, 99)
MEMORY_HEADROOM = 1.10
"""The memory suggested is the largest peak RSS seen plus this margin: RSS is sampled, so the true peak may be a
little higher than the one measured."""
MEMORY_STEP = 256 << 20
"""Memory suggestions are rounded up to a multiple of this (Slurm's --mem takes whole numbers of M or G)."""
TIME_HEADROOM = 1.20
"""The run time to declare is the p99 wall time plus this margin, rounded up to a whole minute."""
TIMEOUT_FACTOR = 2.0
"""The kill limit suggested: twice the longest wall time seen, so that only a task gone wrong reaches it."""
WALLTIME_MARGIN = 60.0
"""A pool profile's default walltime_margin: a worker takes no task this long before its job ends."""
CUT_SHORT = frozenset({"worker_lost", "worker_deleted", "handed_back"})
"""Attempt failures that mean the server closed the record for a worker that never reported the end: its figures
stop at that moment, so they say nothing about what the task needs."""
CORES_MIN_WALL = 1.0
"""Tasks shorter than this (seconds) are left out of the cores a task keeps busy: their CPU over wall time is mostly
startup and the clocks' granularity."""
ENDED = frozenset({Status.SUCCEEDED.value, Status.FAILED.value})


@dataclass(frozen=True)
class Spread:
    """One measure over the measured tasks: the nearest-rank percentiles and the largest value."""

    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        ordered = sorted(values)
        return cls(*(percentile(ordered, p) for p in PERCENTILES), ordered[-1])

    def to_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max}


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of sorted values: the smallest value that at least p % of them do not exceed."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Samples:
    """What each task contributes, in columns: counts for all selected tasks, figures for the measured ones (ended
    S or F with their worker's final usage report)."""

    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    wall: array[float] = field(default_factory=lambda: array("d"))
    cpu: array[float] = field(default_factory=lambda: array("d"))
    efficiency: array[float] = field(default_factory=lambda: array("d"))
    peak_rss: array[int] = field(default_factory=lambda: array("q"))
    cores: array[float] = field(default_factory=lambda: array("d"))
    """CPU time over wall time of tasks that ran at least CORES_MIN_WALL: how many cores a task kept busy, whatever
    its slots."""
    ended_at: array[float] = field(default_factory=lambda: array("d"))
    """When each ended task (S or F) ended, measured or not: the plot's tasks-done-over-time."""
    slots: Counter[int] = field(default_factory=Counter)
    memory_killed_limit: int = 0
    """The largest memory limit a task was killed at (failure `memory`): it needed more than that."""
    timeout_killed: int = 0

    def add_columns(self, page: pb.TaskStatsPage) -> None:
        """A page of TaskStatsPages, a column at a time: what `add` does per task, without a call per task (a
        million of them would cost seconds)."""
        statuses = page.statuses
        self.statuses.update(statuses)
        ended = [i for i, letter in enumerate(statuses) if letter in ENDED]
        if not ended:
            return
        ended_at = page.ended_at
        self.ended_at.extend(ended_at[i] for i in ended)
        failed = [i for i in ended if statuses[i] == "F"]
        if failed:
            failures, limits = page.failures, page.memory_limits
            for i in failed:
                self._failed(failures[i], limits[i])
        final, usage_failures = page.final, page.usage_failures
        measured = [i for i in ended if final[i] and usage_failures[i] not in CUT_SHORT]
        walls, cpus, peaks, slots = list(page.wall_times), list(page.cpu_times), page.peak_rss, page.slots
        self.wall.extend(walls[i] for i in measured)
        self.cpu.extend(cpus[i] for i in measured)
        self.peak_rss.extend(peaks[i] for i in measured)
        self.slots.update(slots[i] or 1 for i in measured)
        self.efficiency.extend(cpus[i] / walls[i] / (slots[i] or 1) for i in measured if walls[i] > 0)
        self.cores.extend(cpus[i] / walls[i] for i in measured if walls[i] >= CORES_MIN_WALL)

    def add_tasks(self, tasks: Iterable[pb.Task]) -> None:
        """Tasks of a StreamTasks page (from a server without TaskStatsPages)."""
        for task in tasks:
            usage = task.usage
            self.add(
                task.status, task.failure, task.slots, task.memory_limit, task.ended_at, usage.wall_time,
                usage.cpu_user + usage.cpu_system, usage.peak_rss, usage.final, usage.failure,
            )  # fmt: skip

    def add(
        self,
        status: str,
        failure: str,
        slots: int,
        memory_limit: int,
        ended_at: float,
        wall: float,
        cpu: float,
        peak_rss: int,
        final: bool,
        usage_failure: str,
    ) -> None:
        """One task: counted always; its end and failure when it ended; its figures when they are its worker's
        final report."""
        self.statuses[status] += 1
        if status not in ENDED:
            return
        self.ended_at.append(ended_at)
        if status == "F":
            self._failed(failure, memory_limit)
        if not final or usage_failure in CUT_SHORT:
            return
        slots = slots or 1
        self.wall.append(wall)
        self.cpu.append(cpu)
        if wall > 0:
            self.efficiency.append(cpu / wall / slots)
        if wall >= CORES_MIN_WALL:
            self.cores.append(cpu / wall)
        self.peak_rss.append(peak_rss)
        self.slots[slots] += 1

    def _failed(self, failure: str, memory_limit: int) -> None:
        kind = failure or "unknown"
        self.failures[kind] += 1
        if kind == "memory":
            self.memory_killed_limit = max(self.memory_killed_limit, memory_limit)
        elif kind == "timeout":
            self.timeout_killed += 1


@dataclass(frozen=True)
class Sizing:
    """What to ask for next time, in the option names of `tqhpc submit`, sbatch and a pool profile."""

    memory: int  # bytes per task: the largest peak RSS plus headroom, rounded up
    memory_covers: float  # the share of measured tasks whose peak RSS is within `memory`
    time_request: float  # seconds: the p99 wall time plus headroom, rounded up to a minute
    time_request_covers: float
    timeout: float  # seconds: a kill limit only a task gone wrong reaches
    cpus_per_task: int  # slots a task should take: the cores it keeps busy (p95), at least the slots it had
    concurrency: int  # tasks at once per worker job, for the job's size
    job_memory: int  # bytes for one worker job: `concurrency` tasks of `memory`
    job_time_limit: float  # seconds: the least that lets a worker take a task of `time_request`

    @property
    def submit_options(self) -> str:
        slots = f" --slots {self.cpus_per_task}" if self.cpus_per_task > 1 else ""
        return (
            f"--memory {slurm_size(self.memory)} --time-request {short_duration(self.time_request)} "
            f"--timeout {short_duration(self.timeout)}{slots}"
        )

    @property
    def sbatch_options(self) -> str:
        cpus = self.concurrency * self.cpus_per_task
        return f"--mem={slurm_size(self.job_memory)} --cpus-per-task={cpus} --time={sbatch_time(self.job_time_limit)}"

    def pool_profile(self, name: str) -> str:
        tasks = "1 task" if self.concurrency == 1 else f"{self.concurrency} tasks"
        return "\n".join(
            [
                f"[pools.{name}]",
                f"concurrency = {self.concurrency * self.cpus_per_task}"
                + (f"  # {tasks} at once x {self.cpus_per_task} slots" if self.cpus_per_task > 1 else ""),
                f'memory = "{slurm_size(self.job_memory)}"'
                f"  # {tasks} at once x {slurm_size(self.memory)} (largest peak RSS + 10 %)",
                f'time_limit = "{sbatch_time(self.job_time_limit)}"'
                f"  # at least --time-request {short_duration(self.time_request)} + walltime_margin 60 s",
            ]
        )

    def to_dict(self, profile_name: str) -> dict[str, Any]:
        return {
            "memory": slurm_size(self.memory),
            "memory_bytes": self.memory,
            "memory_covers": self.memory_covers,
            "time_request": short_duration(self.time_request),
            "time_request_seconds": self.time_request,
            "time_request_covers": self.time_request_covers,
            "timeout": short_duration(self.timeout),
            "timeout_seconds": self.timeout,
            "cpus_per_task": self.cpus_per_task,
            "concurrency": self.concurrency,
            "job_memory": slurm_size(self.job_memory),
            "job_time_limit": sbatch_time(self.job_time_limit),
            "submit_options": self.submit_options,
            "sbatch_options": self.sbatch_options,
            "pool_profile": self.pool_profile(profile_name),
        }


@dataclass(frozen=True)
class TaskStats:
    """The summary `tqhpc stats` prints."""

    count: int
    statuses: dict[str, int]
    measured: int
    wall_time: Spread | None
    cpu_time: Spread | None
    cpu_efficiency: Spread | None
    peak_rss: Spread | None
    failures: dict[str, int]
    sizing: Sizing | None
    warnings: tuple[str, ...]

    def to_dict(self, profile_name: str) -> dict[str, Any]:
        def spread(value: Spread | None) -> dict[str, float] | None:
            return value.to_dict() if value else None

        return {
            "count": self.count,
            "statuses": self.statuses,
            "measured": self.measured,
            "wall_time": spread(self.wall_time),
            "cpu_time": spread(self.cpu_time),
            "cpu_efficiency": spread(self.cpu_efficiency),
            "peak_rss": spread(self.peak_rss),
            "failures": self.failures,
            "sizing": self.sizing.to_dict(profile_name) if self.sizing else None,
            "warnings": list(self.warnings),
        }


def summarize(samples: Samples, concurrency: int = 1) -> TaskStats:
    wall = Spread.of(samples.wall)
    peak = Spread.of(samples.peak_rss)
    efficiency = Spread.of(samples.efficiency)
    sizing = None
    warnings = []
    if wall is not None and peak is not None:
        memory = round_up(max(peak.max * MEMORY_HEADROOM, 1), MEMORY_STEP)
        time_request = round_up(max(wall.p99 * TIME_HEADROOM, 1), 60)
        cores = Spread.of(samples.cores)
        busy = math.ceil(cores.p95 - 0.1) if cores else 1  # a little above a whole core is the shell's own
        cpus = max(1, busy, *samples.slots)
        sizing = Sizing(
            memory=memory,
            memory_covers=_share(samples.peak_rss, memory),
            time_request=time_request,
            time_request_covers=_share(samples.wall, time_request),
            timeout=round_up(wall.max * TIMEOUT_FACTOR, 60),
            cpus_per_task=cpus,
            concurrency=concurrency,
            job_memory=memory * concurrency,
            job_time_limit=time_request + WALLTIME_MARGIN,
        )
    if samples.failures["memory"]:
        limit = f" (up to {slurm_size(samples.memory_killed_limit)})" if samples.memory_killed_limit else ""
        warnings.append(
            f"{_were(samples.failures['memory'])} killed at their memory limit{limit}: they need more than their "
            "peak RSS shows"
        )
    if samples.timeout_killed:
        warnings.append(
            f"{_were(samples.timeout_killed)} killed at their timeout: they need longer than their wall time shows"
        )
    return TaskStats(
        count=sum(samples.statuses.values()),
        statuses={s.value: samples.statuses[s.value] for s in Status if samples.statuses[s.value]},
        measured=len(samples.wall),
        wall_time=wall,
        cpu_time=Spread.of(samples.cpu),
        cpu_efficiency=efficiency,
        peak_rss=peak,
        failures=dict(samples.failures.most_common()),
        sizing=sizing,
        warnings=tuple(warnings),
    )


def _were(count: int) -> str:
    return f"{plural(count, 'task')} {'was' if count == 1 else 'were'}"


def _share(values: Sequence[float], limit: float) -> float:
    return sum(1 for v in values if v <= limit) / len(values)


def round_up(value: float, step: float) -> float:
    return math.ceil(value / step) * step


def slurm_size(size: float) -> str:
    """Bytes in Slurm's --mem form: whole G when they are, else whole M."""
    mib = math.ceil(size / (1 << 20))
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def short_duration(seconds: float) -> str:
    """Seconds as `tqhpc submit --timeout` takes them: 45s, 20m, 1h30m."""
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text


def sbatch_time(seconds: float) -> str:
    """Seconds in sbatch's --time form, H:MM:SS (D-HH:MM:SS beyond a day)."""
    whole = math.ceil(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else clock

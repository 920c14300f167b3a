"""When the worker's Slurm job ends, so it can stop in time instead of being killed blind.

Slurm 23.02 and later put the end in `$SLURM_JOB_END_TIME`; older ones (22.05 on Debian 12) only tell squeue.
The worker takes no task after `end - margin` (it reports that moment to the server, which then hands it only tasks
whose declared time fits), and then drains: prefetched tasks go back to the queue at once, running ones may go on
until shortly before the end and are then killed and requeued with a reason.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger("tqhpc.worker")

KILL_BEFORE_END_SECONDS = 5.0
"""Running tasks still going this close to the job's end are killed and handed back, before Slurm's SIGTERM."""


def job_end_time(environ: dict[str, str] | None = None) -> float | None:
    """The epoch second at which this Slurm job reaches its time limit; None outside Slurm or without a limit."""
    env = os.environ if environ is None else environ
    end = env.get("SLURM_JOB_END_TIME", "")
    if end.isdigit() and int(end) > 0:
        return float(end)
    job_id = env.get("SLURM_JOB_ID", "")
    if not job_id.isdigit():
        return None
    try:
        result = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format=%e"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("cannot ask squeue for the end of job %s (%s); running without a walltime", job_id, err)
        return None
    return parse_squeue_time(result.stdout.strip())


def parse_squeue_time(text: str) -> float | None:
    """squeue prints local time like 2026-11-28T05:20:00; N/A, NONE or Unknown mean no end."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Walltime:
    end: float | None  # the job's end, epoch seconds
    margin: float

    @classmethod
    def from_environment(cls, margin: float) -> Walltime:
        walltime = cls(job_end_time(), margin)
        if walltime.end is not None:
            log.info("the job ends in %.0f s; taking no task after %.0f s", walltime.end - time.time(), walltime.left())
        return walltime

    @property
    def stop_at(self) -> float | None:
        """From this moment on the worker takes no task; None: never."""
        return None if self.end is None else self.end - self.margin

    def left(self, now: float | None = None) -> float:
        """Seconds until stop_at (infinite without a walltime)."""
        if self.end is None:
            return float("inf")
        return self.end - self.margin - (time.time() if now is None else now)

    def due(self) -> bool:
        return self.left() <= 0

    def grace(self) -> float:
        """How long running tasks may still go on once the worker drains for the walltime."""
        if self.end is None:
            return float("inf")
        return max(0.0, self.end - KILL_BEFORE_END_SECONDS - time.time())

"""The job script of a worker: the template `worker.sbatch.template` filled from a pool profile.

Kept apart from submission (Parsl's providers do the same), so the script a job runs can be read and tested alone.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from .profiles import PoolProfile

TEMPLATE = "worker.sbatch.template"


@dataclass(frozen=True)
class WorkerJob:
    """What one worker job needs beyond its profile."""

    worker_id: int
    concurrency: int
    prefetch: int
    access_file: Path
    output: Path


def default_worker_command() -> str:
    """This server's own Python: the job runs the same tqhpc as the server (shared filesystem)."""
    return f"{shlex.quote(sys.executable)} -m tqhpc worker"


def render(profile: PoolProfile, job: WorkerJob) -> str:
    template = Template(resources.files(__package__).joinpath(TEMPLATE).read_text())
    lines = []
    if profile.time_limit:  # none: the partition's own limit applies
        lines.append(f"#SBATCH --time={profile.time_limit}")
    if profile.partition:
        lines.append(f"#SBATCH --partition={profile.partition}")
    if profile.account:
        lines.append(f"#SBATCH --account={profile.account}")
    if profile.memory:
        lines.append(f"#SBATCH --mem={profile.memory}")
    lines += [f"#SBATCH {option}" for option in profile.sbatch_options]
    return template.substitute(
        pool=profile.name,
        worker_id=job.worker_id,
        job_name=f"tqhpc-{profile.name}-{job.worker_id}",
        output=job.output,
        cpus=job.concurrency,
        sbatch_lines="\n".join(lines),
        worker_init=profile.worker_init,
        access_file=shlex.quote(str(job.access_file)),
        worker_command=profile.worker_command or default_worker_command(),
        concurrency=job.concurrency,
        prefetch=job.prefetch,
        ping_interval=f"{profile.ping_interval:g}",
        idle_timeout=f"{profile.idle_timeout:g}",
        walltime_margin=f"{profile.walltime_margin:g}",
    )

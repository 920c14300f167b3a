"""The real single-node Slurm cluster for the Slurm pool tests (started by slurm/start-cluster.sh).

A test that needs Slurm and finds none fails, loudly: scripts/test.sh starts the cluster, so a missing cluster is
a broken test setup, never a reason to skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# Read at import, before the autouse fixture of conftest.py removes every SLURM_* variable from the tests' env.
SLURM_CONF = os.environ.get("SLURM_CONF", "")


def slurm_env() -> dict[str, str]:
    """The environment for anything that talks to the cluster: the server, squeue, scancel."""
    if not SLURM_CONF or not Path(SLURM_CONF).exists():
        pytest.fail(
            "these tests need the real single-node Slurm: run `slurm/start-cluster.sh DIR` as root and export the "
            "SLURM_CONF it prints (scripts/test.sh does both)"
        )
    return dict(os.environ, SLURM_CONF=SLURM_CONF)


def require_cluster() -> dict[str, str]:
    env = slurm_env()
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"the Slurm cluster of {SLURM_CONF} does not answer: {result.stderr.strip()}")
    return env


def squeue_jobs(env: dict[str, str], job_ids: list[str]) -> dict[str, str]:
    """State of each of `job_ids` that squeue still shows as queued or running."""
    result = subprocess.run(
        ["squeue", "-h", "-o", "%i|%T"], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    states = dict(line.split("|", 1) for line in result.stdout.split())
    return {job: states[job] for job in job_ids if job in states}


def scancel(env: dict[str, str], job_id: str, *options: str) -> None:
    subprocess.run(["scancel", *options, job_id], env=env, check=True, timeout=30)


def scancel_all(env: dict[str, str], job_ids: list[str]) -> None:
    """Cleanup after a test: cancel these jobs, whether they still run or not."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], env=env, capture_output=True, check=False, timeout=30)


def job_fields(env: dict[str, str], job_id: str) -> dict[str, str]:
    """What Slurm recorded for a job (`scontrol show job`): Partition, TimeLimit, CPUs/Task, ..."""
    result = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job_id],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return dict(field.partition("=")[::2] for field in result.stdout.split())


def job_script(env: dict[str, str], job_id: str) -> str:
    """The batch script Slurm holds for a job: what sbatch was given."""
    result = subprocess.run(
        ["scontrol", "write", "batch_script", job_id, "-"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def default_partition(env: dict[str, str]) -> tuple[str, str]:
    """The cluster's default partition as sinfo marks it (`*`), and the time limit a job naming none gets there, as
    scontrol shows a job's TimeLimit (UNLIMITED when the partition has none)."""
    result = subprocess.run(
        ["sinfo", "--noheader", "--format=%P|%L|%l"], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    for line in result.stdout.split():
        name, default_time, max_time = line.split("|")
        if name.endswith("*"):
            limit = default_time if default_time not in {"n/a", "infinite"} else max_time
            return name.rstrip("*"), "UNLIMITED" if limit in {"n/a", "infinite"} else limit
    pytest.fail(f"the cluster marks no default partition: {result.stdout}")

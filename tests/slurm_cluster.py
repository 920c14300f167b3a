"""The real single-node Slurm cluster for the tests of issue 4 (started by slurm/start-cluster.sh).

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

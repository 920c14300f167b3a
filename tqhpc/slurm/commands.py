"""sbatch, scancel, squeue and scontrol, run as asyncio subprocesses so the server's event loop never waits on Slurm."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from ..errors import FailedPrecondition
from .partitions import Partition, PartitionError, parse_partitions

log = logging.getLogger("tqhpc.server")

COMMAND_TIMEOUT_SECONDS = 60.0

# Job states after which the job runs nothing (squeue %T names).
ENDED_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
})  # fmt: skip
# COMPLETING is not among them: the job's processes may still be alive, e.g. a worker handing its tasks back.


class SlurmError(FailedPrecondition):
    """A Slurm command failed; the message carries its own stderr."""


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


async def run(*argv: str, stdin: str | None = None) -> Result:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=os.environ.copy(),
        )
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed or not on the server's PATH") from None
    try:
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), COMMAND_TIMEOUT_SECONDS
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SlurmError(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_SECONDS:g} s") from None
    return Result(process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def sbatch(script: str) -> str:
    """Submit a job script; return its job id."""
    result = await run("sbatch", "--parsable", stdin=script)
    if result.code != 0:
        message = " ".join(result.stderr.split()) or f"exit code {result.code}"
        raise SlurmError(f"sbatch refused the worker job: {message}")
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id: {result.stdout.strip()!r}")
    return job_id


async def scancel(job_ids: list[str]) -> None:
    if not job_ids:
        return
    result = await run("scancel", *job_ids)
    if result.code != 0:
        log.warning("scancel %s: %s", " ".join(job_ids), result.stderr.strip())


async def job_states(job_ids: list[str]) -> dict[str, str]:
    """The state of every job Slurm still knows among `job_ids`; one it no longer lists is left out (ended)."""
    if not job_ids:
        return {}
    result = await run("squeue", "--noheader", "--states=all", "--format=%i|%T", "--jobs=" + ",".join(job_ids))
    if result.code != 0:
        # squeue refuses a list made only of ids it forgot ("Invalid job id specified"): then none is known.
        if "Invalid job id" in result.stderr:
            return {}
        raise SlurmError(f"squeue failed: {' '.join(result.stderr.split())}")
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id in job_ids:
            states[job_id] = state
    return states


async def partitions() -> list[Partition]:
    """Every partition of the cluster, as scontrol describes it."""
    result = await run("scontrol", "show", "partition", "--oneliner")
    if result.code != 0:
        raise SlurmError(f"scontrol show partition failed: {' '.join(result.stderr.split()) or result.code}")
    try:
        return parse_partitions(result.stdout)
    except PartitionError as err:
        raise SlurmError(str(err)) from None

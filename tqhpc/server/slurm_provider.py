"""CreateWorker(provider="slurm"): every worker is one Slurm job, submitted, watched and cancelled from here.

The job runs `tqhpc worker` with the worker id reserved for it, so the job and the worker are one: the id is
recorded against the job id at submission (state `starting`, job `PENDING`), the worker registers under it when
the job starts, and `reconcile` (polled by the server) retires the worker when its job ends behind our back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..errors import InvalidArgument
from ..slurm import commands
from ..slurm.profiles import PoolProfile
from ..slurm.script import WorkerJob, render
from ..store import Database, slurm_jobs

log = logging.getLogger("tqhpc.server")


class SlurmProvider:
    name = "slurm"

    def __init__(
        self,
        db: Database,
        profiles: dict[str, PoolProfile],
        state_dir: Path,
        access_file: Path,
        on_job_ended: Callable[[int, str], Awaitable[None]],
    ) -> None:
        self.db = db
        self.profiles = profiles
        self.log_dir = state_dir / "workers"
        self.access_file = access_file
        self.on_job_ended = on_job_ended

    def check_flavor(self, flavor: str) -> None:
        """An unknown profile is refused before any worker is created."""
        if flavor not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none: add a [pools.NAME] table to the server's config.toml"
            raise InvalidArgument(f"unknown Slurm pool profile {flavor!r} (flavor); profiles: {known}")

    def profile(self, flavor: str) -> PoolProfile:
        self.check_flavor(flavor)
        return self.profiles[flavor]

    def script(self, worker_id: int, concurrency: int, prefetch: int, flavor: str) -> str:
        profile = self.profile(flavor)
        job = WorkerJob(
            worker_id=worker_id,
            concurrency=concurrency or profile.concurrency,
            prefetch=prefetch,
            access_file=self.access_file,
            output=self.log_dir / f"slurm-worker-{worker_id}-%j.log",
        )
        return render(profile, job)

    async def start(self, worker_ids: list[int], concurrency: int, prefetch: int, flavor: str) -> None:
        """sbatch one job per worker; if one is refused, cancel those already submitted and raise sbatch's error."""
        self.check_flavor(flavor)
        self.log_dir.mkdir(mode=0o700, exist_ok=True)
        await self.db.run(lambda c: slurm_jobs.set_pool(c, worker_ids, flavor))
        submitted: list[str] = []
        try:
            for worker_id in worker_ids:
                job_id = await commands.sbatch(self.script(worker_id, concurrency, prefetch, flavor))
                submitted.append(job_id)
                await self.db.run(lambda c, w=worker_id, j=job_id: slurm_jobs.set_job(c, w, j, "PENDING"))
                log.info("worker %d is Slurm job %s (pool %s)", worker_id, job_id, flavor)
        except BaseException:
            await commands.scancel(submitted)
            raise

    async def stop(self, worker_id: int) -> None:
        job_id = await self.db.run(lambda c: slurm_jobs.job_of(c, worker_id))
        if job_id:
            await commands.scancel([job_id])
            await self.db.run(lambda c: slurm_jobs.set_job_states(c, {worker_id: "CANCELLED"}))
            log.info("cancelled Slurm job %s of worker %d", job_id, worker_id)

    async def reconcile(self) -> None:
        """Compare live Slurm workers with squeue: record job states; a job that ended retires its worker (lost)."""
        watched = await self.db.run(slurm_jobs.live_slurm_workers)
        if not watched:
            return
        states = await commands.job_states([w.job_id for w in watched])
        changed: dict[int, str] = {}
        for worker in watched:
            state = states.get(worker.job_id, "GONE")
            if state != worker.job_state:
                changed[worker.worker_id] = state
        if changed:
            await self.db.run(lambda c: slurm_jobs.set_job_states(c, changed))
        for worker in watched:
            state = states.get(worker.job_id, "GONE")
            if state in commands.ENDED_STATES or state == "GONE":
                reason = (
                    f"the Slurm job {worker.job_id} of worker {worker.worker_id} ended outside tqhpc ({state}); "
                    f"see workers/slurm-worker-{worker.worker_id}-{worker.job_id}.log"
                )
                log.warning("%s", reason)
                await self.on_job_ended(worker.worker_id, reason)

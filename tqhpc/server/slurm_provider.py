"""CreateWorker(provider="slurm"): every worker is one Slurm job, submitted, watched and cancelled from here.

The job runs `tqhpc worker` with the worker id reserved for it, so the job and the worker are one: the id is
recorded against the job id at submission (state `starting`, job `PENDING`), the worker registers under it when
the job starts, and `reconcile` (polled by the server) retires the worker when its job ends behind our back.
A request that names no pool profile gets the default one (see slurm/profiles.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..errors import InvalidArgument
from ..slurm import commands
from ..slurm.partitions import Partition, PartitionError, default_partition
from ..slurm.profiles import DEFAULT_PROFILE, PoolProfile, default_profile
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
        self.default_profile: PoolProfile | None = None  # built from the cluster's default partition when first used
        self.submitted: Counter[str] = Counter()  # jobs sbatch accepted per pool since the server started

    def known_profiles(self) -> list[str]:
        """The names a request may use: the configured profiles and the default one."""
        return sorted({DEFAULT_PROFILE, *self.profiles})

    async def resolve(self, flavor: str, concurrency: int, prefetch: int | None) -> tuple[int, int]:
        """Refuse an unknown profile before any worker is created; return the (concurrency, prefetch) of the
        workers: the request's, or the profile's for a concurrency of 0 or a prefetch of None."""
        profile = await self._lookup(flavor)
        return concurrency or profile.concurrency, profile.prefetch if prefetch is None else prefetch

    async def _lookup(self, flavor: str) -> PoolProfile:
        name = flavor or DEFAULT_PROFILE
        if name in self.profiles:
            return self.profiles[name]
        if name != DEFAULT_PROFILE:
            raise InvalidArgument(
                f"unknown Slurm pool profile {flavor!r} (known: {', '.join(self.known_profiles())}; "
                "add [pools.NAME] tables to the server's config.toml for more)"
            )
        self.default_profile = default_profile(await self._default_partition())
        return self.default_profile

    async def _default_partition(self) -> Partition:
        """Asked at every request that needs it, so a change of the cluster's configuration is followed."""
        try:
            return default_partition(await commands.partitions())
        except commands.SlurmError as err:
            raise commands.SlurmError(
                f"the default pool profile needs the cluster's default partition, but: {err}"
            ) from None
        except PartitionError as err:
            raise commands.SlurmError(
                f"{err}, so there is no default pool profile: name a profile (known: "
                f"{', '.join(sorted(self.profiles)) or 'none'}) or add a [pools.default] table with a partition "
                "to the server's config.toml"
            ) from None

    def _resolved(self, flavor: str) -> PoolProfile:
        """The profile `resolve` found for this flavor (the service always resolves a request before starting it)."""
        name = flavor or DEFAULT_PROFILE
        profile = self.profiles.get(name, self.default_profile)
        if profile is None or profile.name != name:
            raise RuntimeError(f"Slurm pool profile {flavor!r} was not resolved before its workers were started")
        return profile

    def script(self, worker_id: int, concurrency: int, prefetch: int, profile: PoolProfile) -> str:
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
        profile = self._resolved(flavor)
        self.log_dir.mkdir(mode=0o700, exist_ok=True)
        await self.db.run(lambda c: slurm_jobs.set_pool(c, worker_ids, profile.name))
        submitted: list[str] = []
        try:
            for worker_id in worker_ids:
                job_id = await commands.sbatch(self.script(worker_id, concurrency, prefetch, profile))
                submitted.append(job_id)
                self.submitted[profile.name] += 1
                await self.db.run(lambda c, w=worker_id, j=job_id: slurm_jobs.set_job(c, w, j, "PENDING"))
                log.info("worker %d is Slurm job %s (pool %s)", worker_id, job_id, profile.name)
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

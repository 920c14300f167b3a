"""Automatic allocation, after HyperQueue's autoalloc: Slurm jobs appear while tasks wait.

Per pool profile with `autoalloc = true`: while tasks its workers could run are pending (slots within its
concurrency, declared run time within its time limit), keep up to `backlog` worker jobs waiting in
Slurm, and never more than `max_workers` live workers of the pool in all. Workers leave by themselves after
`idle_timeout` seconds without a task (the job script passes it to `tqhpc worker`), so the pool shrinks to nothing
when the queue is empty. After `max_submit_failures` sbatch refusals in a row the pool is paused, and
`tqhpc pool list` shows sbatch's own message as the reason; `tqhpc pool resume NAME` (or a restart) resumes it.
The listing also counts every job submitted for each pool since the server started, by hand or automatically, and
shows the default pool once a request used it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .._proto import pb
from ..errors import NotFound, TqhpcError
from ..slurm.profiles import PoolProfile
from ..store import Database, slurm_jobs
from .slurm_provider import SlurmProvider

log = logging.getLogger("tqhpc.server")

NO_PROFILES = "the server has no pool profiles: add [pools.NAME] tables to its config.toml and restart it"

CreateWorkers = Callable[[str, int, int, int | None, str], Awaitable[list[int]]]
"""(provider, number, concurrency, prefetch, flavor) -> worker ids: the CreateWorker path of the service."""


@dataclass
class PoolState:
    failures: int = 0
    paused: bool = False
    pause_reason: str = ""


class Autoallocator:
    def __init__(self, db: Database, slurm: SlurmProvider, create_workers: CreateWorkers) -> None:
        self.db = db
        self.slurm = slurm
        self.profiles = slurm.profiles
        self.create_workers = create_workers
        self.states: defaultdict[str, PoolState] = defaultdict(PoolState)

    def listed(self) -> dict[str, PoolProfile]:
        """The pools `pool list` shows: every configured profile, and the default one once a request used it."""
        pools = dict(self.profiles)
        default = self.slurm.default_profile
        if default is not None and default.name not in pools:
            pools[default.name] = default
        return pools

    def wanted(self, profile: PoolProfile, pending: int, live: int, queued: int) -> int:
        """How many jobs to submit now: fill the backlog while work waits, within max_workers."""
        if not profile.autoalloc or pending == 0 or self.states[profile.name].paused:
            return 0
        return max(0, min(profile.backlog - queued, profile.max_workers - live))

    async def tick(self) -> None:
        if not any(p.autoalloc for p in self.profiles.values()):
            return
        counts = await self.db.run(slurm_jobs.live_pool_counts)
        for profile in self.profiles.values():
            if not profile.autoalloc or self.states[profile.name].paused:
                continue
            pending = await self.db.run(
                lambda c, p=profile: slurm_jobs.pending_task_count(c, p.concurrency, p.task_time)
            )
            live, queued = counts.get(profile.name, (0, 0))
            number = self.wanted(profile, pending, live, queued)
            if number:
                await self._submit(profile, number)

    async def _submit(self, profile: PoolProfile, number: int) -> None:
        state = self.states[profile.name]
        try:
            ids = await self.create_workers("slurm", number, profile.concurrency, profile.prefetch, profile.name)
        except TqhpcError as err:
            state.failures += 1
            log.warning("autoalloc: pool %s could not submit (%d in a row): %s", profile.name, state.failures, err)
            if state.failures >= profile.max_submit_failures:
                state.paused = True
                state.pause_reason = f"paused after {state.failures} failed submissions; last: {err}"
                log.error("autoalloc: pool %s %s", profile.name, state.pause_reason)
            return
        state.failures = 0
        log.info("autoalloc: pool %s submitted workers %s", profile.name, ids)

    async def resume(self, name: str) -> pb.SlurmPool:
        """Let a paused pool submit again (the user fixed the profile's partition, account, ...); its failure count
        starts over, so it pauses again only after as many new failures."""
        pools = self.listed()
        if not pools:
            raise NotFound(NO_PROFILES)
        if name not in pools:
            raise NotFound(f"no pool profile {name!r} (known: {', '.join(sorted(pools))})")
        if self.states[name].paused:
            log.info("autoalloc: pool %s resumed", name)
        self.states[name] = PoolState()
        counts = await self.db.run(slurm_jobs.live_pool_counts)
        return self._pool_message(pools[name], counts)

    async def describe(self) -> pb.SlurmPoolList:
        counts = await self.db.run(slurm_jobs.live_pool_counts)
        return pb.SlurmPoolList(pools=[self._pool_message(profile, counts) for profile in self.listed().values()])

    def _pool_message(self, profile: PoolProfile, counts: dict[str, tuple[int, int]]) -> pb.SlurmPool:
        state = self.states[profile.name]
        live, queued = counts.get(profile.name, (0, 0))
        return pb.SlurmPool(
            name=profile.name,
            autoalloc=profile.autoalloc,
            backlog=profile.backlog,
            max_workers=profile.max_workers,
            idle_timeout=profile.idle_timeout,
            partition=profile.partition,
            time_limit=profile.time_limit,
            queued=queued,
            live=live,
            paused=state.paused,
            pause_reason=state.pause_reason,
            failures=state.failures,
            submitted=self.slurm.submitted[profile.name],
        )

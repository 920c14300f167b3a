"""The worker's container support as one object: found at start, asked for each container task's command line,
and asked afterwards whether a failure was apptainer's (the container never started) or the task's own."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from ..config import ApptainerSettings
from .apptainer import FATAL_MARK, ApptainerRunner, Availability, check_settings, detect
from .images import ImageCache, ImageError, is_uri
from .process import Failure, Outcome

log = logging.getLogger("tqhpc.worker.containers")

APPTAINER_EXIT_CODE = 255
"""What `apptainer exec` exits with when it cannot run the container."""


class ContainerSupport:
    def __init__(self, settings: ApptainerSettings, scratch_root: Path) -> None:
        check_settings(settings)  # a bad [apptainer] value stops the worker at once, in one line
        self.settings = settings
        self.scratch_root = scratch_root
        self.availability: Availability | None = None  # found by start()
        self.runner: ApptainerRunner | None = None

    async def start(self, scratch: Path, tag: str) -> Availability:
        """Find apptainer once; a missing one is reported here, once, not at every task."""
        self.availability = await asyncio.to_thread(detect, self.settings)
        if not self.availability.capable:
            log.warning("this worker cannot run container tasks: %s; it takes only tasks without --container",
                        self.availability.note)  # fmt: skip
            return self.availability
        cache_dir = Path(self.settings.image_cache) if self.settings.image_cache else self.scratch_root / "images"
        env = dict(os.environ)
        env.setdefault("APPTAINER_CACHEDIR", str(cache_dir / "apptainer-cache"))
        cache = ImageCache(cache_dir, self.settings.executable, env)
        self.runner = ApptainerRunner(self.settings, scratch, cache, tag)
        if self.settings.instances:
            await self.runner.stop_orphans()
        log.info("container tasks run with %s; images pulled into %s", self.availability.note, cache_dir)
        return self.availability

    async def command(self, image: str, command: str, workdir: Path, env: dict[str, str]) -> list[str] | Outcome:
        """The argv running `command` in `image`, or the Outcome of a task that cannot run (never raises)."""
        if self.runner is None:
            return Outcome(
                None,
                f"this worker cannot run container tasks: {self.availability.note if self.availability else '?'}",
                Failure.NO_APPTAINER,
            )
        try:
            path = await self.runner.cache.resolve(image)
        except ImageError as err:
            return Outcome(None, str(err), err.failure)
        return await self.runner.command(path, command, workdir, env)

    def judge(self, image: str, outcome: Outcome, stderr_tail: bytes) -> Outcome:
        """Apptainer's own failure (exit 255 with a FATAL line) means the container could not start."""
        if outcome.failure or outcome.exit_code != APPTAINER_EXIT_CODE or FATAL_MARK not in stderr_tail:
            return outcome
        if self.runner is not None:
            cache = self.runner.cache
            self.runner.forget(str(cache.path_for(image)) if is_uri(image) else str(Path(image).expanduser().resolve()))
        line = stderr_tail[stderr_tail.rfind(FATAL_MARK) :].split(b"\n", 1)[0].decode(errors="replace")
        outcome.failure = Failure.CONTAINER_START
        outcome.error = f"the container {image!r} could not start: {line}"
        return outcome

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop_all()

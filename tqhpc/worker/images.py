"""Container images for tasks: a local `.sif` or sandbox directory is used in place; a URI is pulled once per node.

The cache is a directory (per node by default, or on a shared file system) where each URI becomes one SIF named by
its hash. A pull happens under a `filelock` on that name, into a temporary file renamed into place only when
complete: sixteen workers asking for the same URI at once make one pull between them, and none of them can ever
read a half-written image. Each pull leaves a `.json` beside the image saying who pulled it, when, and how long it
took.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import filelock
from spython.utils import split_uri

from .process import Failure

log = logging.getLogger("tqhpc.worker.images")

PULLED_SCHEMES = frozenset({"docker", "oras", "library", "shub", "http", "https", "docker-archive", "oci-archive"})
"""URI schemes `apptainer pull` turns into a SIF; anything else is a path on this node."""
PULL_TIMEOUT_SECONDS = 3600.0
STDERR_TAIL_BYTES = 4000


class ImageError(Exception):
    """The task's image cannot be had; `failure` is the machine-readable kind, the message is for the user."""

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(message)
        self.failure = failure


def is_uri(image: str) -> bool:
    scheme, _ = split_uri(image)
    return scheme in PULLED_SCHEMES and "://" in image


@dataclass
class ImageCache:
    directory: Path
    executable: str = "apptainer"
    env: dict[str, str] | None = None
    pull_timeout: float = PULL_TIMEOUT_SECONDS
    _pulling: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def resolve(self, image: str) -> str:
        """The local path to run `image` from, pulling it first if it is a URI not yet in the cache."""
        if is_uri(image):
            if self.path_for(image).exists():
                return str(self.path_for(image))
            # Tasks of this worker wait for one of them here, not each in a thread of its own on the file lock.
            async with self._pulling.setdefault(image, asyncio.Lock()):
                return str(await asyncio.to_thread(self.pull_once, image))
        path = Path(image).expanduser()
        if not path.exists():
            raise ImageError(
                Failure.IMAGE_MISSING,
                f"the container image {image!r} does not exist on {socket.gethostname()} (give a .sif file, a "
                f"sandbox directory, or a URI such as docker://alpine)",
            )
        return str(path.resolve())

    def path_for(self, uri: str) -> Path:
        return self.directory / f"{hashlib.sha256(uri.encode()).hexdigest()[:32]}.sif"

    def pull_once(self, uri: str) -> Path:
        """Return the cached image of `uri`, pulling it if no one has (blocking: run it in a thread)."""
        target = self.path_for(uri)
        if target.exists():
            return target
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(target.with_suffix(".lock")), timeout=self.pull_timeout)
        try:
            with lock:
                if target.exists():  # another worker pulled it while we waited for the lock
                    return target
                self._pull(uri, target)
        except filelock.Timeout:
            raise ImageError(
                Failure.PULL_FAILED,
                f"waited {self.pull_timeout:g} s for another worker's pull of {uri} to finish; giving up",
            ) from None
        return target

    def _pull(self, uri: str, target: Path) -> None:
        partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.part")
        started = time.monotonic()
        log.info("pulling %s into %s", uri, target)
        try:
            result = subprocess.run(
                [self.executable, "--quiet", "pull", "--force", str(partial), uri],
                env=self.env,
                capture_output=True,
                timeout=self.pull_timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            partial.unlink(missing_ok=True)
            raise ImageError(Failure.PULL_FAILED, f"cannot pull {uri}: {err}") from None
        if result.returncode != 0 or not partial.exists():
            partial.unlink(missing_ok=True)
            said = result.stderr.decode(errors="replace")[-STDERR_TAIL_BYTES:].strip()
            raise ImageError(Failure.PULL_FAILED, f"pulling {uri} failed (exit code {result.returncode}): {said}")
        os.replace(partial, target)  # atomic: readers see no image or the whole image
        seconds = time.monotonic() - started
        meta = {"uri": uri, "pulled_at": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                "seconds": seconds}  # fmt: skip
        target.with_suffix(".json").write_text(json.dumps(meta))
        log.info("pulled %s into %s in %.1f s", uri, target, seconds)

"""Running tasks in Apptainer: detect it once at worker start, build the command lines, keep started instances.

Starting a container costs about 140 ms here, against under a millisecond for a bare process; that is most of the
cost of a short task. So the worker keeps started `apptainer instance`s and runs each task with
`apptainer exec --pwd WORKDIR instance://NAME sh -c COMMAND`. Binds can only be given when an instance starts, and a
task's working directory must be bound, so an instance serves one image and one directory: the worker's whole
scratch directory (where tasks without a directory of their own run) or the directory tasks were submitted from (a
sweep's thousands of tasks usually share one). A worker keeps at most MAX_INSTANCES; tasks beyond them, and tasks of
an image whose instance cannot start, run with a plain `apptainer exec IMAGE` each, their directory bound. Instances
are stopped when the worker stops.

spython serves here for what it does well (finding the executable, splitting URIs); the commands themselves are
built and run here because the worker is asynchronous, spython's calls block, and its bind helper exits the
process on a missing path, which a worker must never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from spython.utils import check_install

from ..config import ApptainerSettings, ConfigError
from .images import ImageCache

log = logging.getLogger("tqhpc.worker.apptainer")

CAP_SYS_RESOURCE = 24
MAX_INSTANCES = 8
"""Started instances one worker keeps (each holds a few processes and mounts); more directories run plain exec."""
INSTANCE_START_TIMEOUT = 120.0
INSTANCE_STOP_TIMEOUT = 20.0
FATAL_MARK = b"FATAL:"
"""How apptainer itself reports that it could not run the container (the task never ran)."""

TASK_VARIABLES = ("TQHPC_TASK_ID", "TQHPC_WORKER_ID", "TQHPC_ARRAY_ID")
"""What a task gets from the worker even in a clean environment."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Availability:
    capable: bool
    note: str  # the version found, or why containers cannot run here


def detect(settings: ApptainerSettings) -> Availability:
    """Is there a working apptainer on this node? Blocking (runs `apptainer --version`): call it once, at start."""
    path = shutil.which(settings.executable)
    if path is None:
        return Availability(False, f"{settings.executable!r} not found on this node's PATH; install Apptainer")
    if not check_install(path):
        return Availability(False, f"{path} --version fails; the Apptainer installation is broken")
    return Availability(True, path)


def _tristate(name: str, value: str) -> bool | None:
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if lowered == "auto":
        return None
    raise ConfigError(f"[apptainer] {name} must be true, false or auto, not {value!r}")


def check_settings(settings: ApptainerSettings) -> None:
    """Raise ConfigError for a value the runner could not use."""
    _tristate("userns", settings.userns)
    _tristate("nv", settings.nv)


def root_without_sys_resource() -> bool:
    """Root that lacks CAP_SYS_RESOURCE (some containers and VMs) cannot set up a container without a user
    namespace: apptainer fails with "Requesting capability set ..."."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    except (OSError, ValueError):
        pass
    return False


def has_nvidia_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


@dataclass
class ApptainerRunner:
    settings: ApptainerSettings
    scratch: Path
    """The worker's scratch directory: one instance per image binds it for every task that runs inside it."""
    cache: ImageCache
    tag: str
    """Makes instance names unique on the node (worker id and pid)."""
    instances: dict[tuple[str, Path], str] = field(default_factory=dict)  # (image path, bound dir) -> instance name
    no_instance: set[str] = field(default_factory=set)  # images whose instance would not start
    _locks: dict[tuple[str, Path], asyncio.Lock] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        userns = _tristate("userns", self.settings.userns)
        self.userns = root_without_sys_resource() if userns is None else userns
        nv = _tristate("nv", self.settings.nv)
        self.nv = has_nvidia_gpu() if nv is None else nv
        if self.userns:
            log.info("containers run in a user namespace (--userns)")

    def _common(self) -> list[str]:
        options = []
        if self.userns:
            options.append("--userns")
        if self.nv:
            options.append("--nv")
        if self.settings.cleanenv:
            options.append("--cleanenv")
        for bind in self.settings.binds:
            options += ["--bind", bind]
        return options + list(self.settings.options)

    def _instance_exec_options(self) -> list[str]:
        """What still applies when joining a started instance: binds and devices were set when it started, but
        the environment is each exec's own."""
        return (["--userns"] if self.userns else []) + (["--cleanenv"] if self.settings.cleanenv else [])

    def _env(self, env: dict[str, str]) -> list[str]:
        """With a clean environment, the task still gets its TQHPC_* variables."""
        if not self.settings.cleanenv:
            return []
        return [f"--env={key}={env[key]}" for key in TASK_VARIABLES if key in env]

    async def command(self, image: str, command: str, workdir: Path, env: dict[str, str]) -> list[str]:
        """The argv that runs `command` in `image` (a local path by now) with `workdir` bound and current."""
        exe = self.settings.executable
        bound = self.scratch if workdir.is_relative_to(self.scratch) else workdir
        if self.settings.instances and image not in self.no_instance:
            name = await self._instance(image, bound)
            if name is not None:
                return [exe, "--quiet", "exec", *self._instance_exec_options(), *self._env(env),
                        "--pwd", str(workdir), f"instance://{name}", "sh", "-c", command]  # fmt: skip
        return [exe, "--quiet", "exec", *self._common(), *self._env(env), *bind_option(workdir),
                "--pwd", str(workdir), image, "sh", "-c", command]  # fmt: skip

    def forget(self, image: str) -> None:
        """An instance of the image failed a task before it could start: start fresh ones next time."""
        for key in [key for key in self.instances if key[0] == image]:
            name = self.instances.pop(key)
            asyncio.get_running_loop().create_task(self._stop(name))

    async def _instance(self, image: str, bound: Path) -> str | None:
        """The started instance of `image` with `bound` bound, started now if need be; None: use plain exec."""
        key = (image, bound)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.instances:
                return self.instances[key]
            if image in self.no_instance or len(self.instances) >= MAX_INSTANCES:
                return None
            name = f"tqhpc-{self.tag}-{next(self._numbers)}"
            if bound == self.scratch:
                self.scratch.mkdir(parents=True, exist_ok=True)
            argv = [self.settings.executable, "--quiet", "instance", "start", *self._common(),
                    *bind_option(bound), image, name]  # fmt: skip
            code, said = await _run(argv, INSTANCE_START_TIMEOUT)
            if code != 0:
                log.warning(
                    "cannot start an apptainer instance of %s (%s); its tasks start a container each instead",
                    image, said.strip() or f"exit code {code}",
                )  # fmt: skip
                self.no_instance.add(image)
                return None
            log.info("started apptainer instance %s of %s with %s bound", name, image, bound)
            self.instances[key] = name
            return name

    async def stop_orphans(self) -> None:
        """Stop instances left by workers of this user that died without stopping them (SIGKILL, a crash): their
        names carry the dead worker's pid. Instances of live workers are left alone."""
        code, listing = await _run([self.settings.executable, "instance", "list", "--json"], INSTANCE_STOP_TIMEOUT,
                                   stdout=True)  # fmt: skip
        if code != 0:
            return
        try:
            names = [entry["instance"] for entry in json.loads(listing).get("instances", [])]
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        for name in names:
            owner = _owner_pid(name)
            if owner is not None and owner != os.getpid() and not psutil.pid_exists(owner):
                log.info("stopping apptainer instance %s left by a worker that is gone (pid %d)", name, owner)
                await self._stop(name)

    async def stop_all(self) -> None:
        names = list(self.instances.values())
        self.instances.clear()
        await asyncio.gather(*(self._stop(name) for name in names))

    async def _stop(self, name: str) -> None:
        code, said = await _run([self.settings.executable, "--quiet", "instance", "stop", name], INSTANCE_STOP_TIMEOUT)
        if code == 0:
            log.info("stopped apptainer instance %s", name)
        else:
            log.warning("could not stop apptainer instance %s: %s", name, said.strip() or f"exit code {code}")


def bind_option(directory: Path) -> list[str]:
    """Bind `directory` at the same path inside the container. `--bind` splits its argument at commas and colons,
    which a user's directory may hold; `--mount` takes CSV with quoting, so any path binds as it is."""
    spec = io.StringIO()
    csv.writer(spec, quoting=csv.QUOTE_ALL, lineterminator="").writerow(
        ["type=bind", f"source={directory}", f"destination={directory}"]
    )
    return ["--mount", spec.getvalue()]


def _owner_pid(name: str) -> int | None:
    """The worker pid in an instance name this module made (`tqhpc-PID-N`), else None."""
    parts = name.split("-")
    if len(parts) == 3 and parts[0] == "tqhpc" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1])
    return None


async def _run(argv: list[str], timeout: float, *, stdout: bool = False) -> tuple[int, str]:
    """Run a short apptainer command; (exit code, its stderr or with `stdout` its output). Never raises."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        return 127, str(err)
    try:
        out, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return -1, f"timed out after {timeout:g} s"
    return process.returncode or 0, (out if stdout else stderr).decode(errors="replace")

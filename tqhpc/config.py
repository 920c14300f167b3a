"""Settings: defaults, then `config.toml`, then `TQHPC_<KEY>` variables, then command-line flags.

One file serves the server and the workers: its `[server]` and `[worker]` tables hold the keys of the dataclasses
below. The file is `$TQHPC_CONFIG`, else `config.toml` in the state directory: the server's `--state-dir` (else the
default one), and for a worker the directory of its access file, which is the server's state directory.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import tomli

from .access import default_state_dir


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key, where it came from and what was wrong."""


def _setting(default: Any, help: str) -> Any:
    """A settings field; its help is shown by the flag that `settings_options` makes for it."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    worker_timeout: float = _setting(60.0, "Seconds without a ping before a worker is lost and its tasks requeued.")
    reap_interval: float = _setting(5.0, "Seconds between looks for lost workers.")
    local_worker_ping_interval: float = _setting(1.0, "Ping interval of the workers `workers create` starts.")
    slurm_poll_interval: float = _setting(5.0, "Seconds between looks at squeue for the Slurm jobs of workers.")
    crash_limit: int = _setting(5, "A task whose worker is lost this many times while running it fails (0: never).")
    max_task_output: int = _setting(
        4 * 1024**3, "Bytes of stdout (and of stderr) kept per attempt of a task, then a note says it was cut (0: all)."
    )
    prune_after: float = _setting(
        0.0, "Remove ended tasks and their output this many seconds after they ended (0: keep them; see `prune`)."
    )


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = _setting(0, "Tasks run at once (0: $SLURM_CPUS_PER_TASK, else the CPUs it may use).")
    prefetch: int = _setting(1, "Tasks accepted beyond concurrency, ready to start without waiting for a ping.")
    ping_interval: float = _setting(1.0, "Seconds between pings to a server that keeps no session for the worker.")
    heartbeat_interval: float = _setting(
        5.0, "Seconds between heartbeats on the session while idle (sooner if the server asks); work is pushed."
    )
    grace_period: float = _setting(
        30.0,
        "On SIGINT (or SIGTERM outside a Slurm job), seconds running tasks may go on before they are handed back.",
    )
    log_flush_interval: float = _setting(0.2, "Seconds output may wait in the worker before it is sent.")
    scratch_dir: str = _setting(
        "", "Where tasks that name no directory get one of their own (default: $TMPDIR, else /tmp)."
    )
    usage_interval: float = _setting(1.0, "Seconds between samples of each task's processes (the first is at once).")
    default_timeout: float = _setting(0.0, "Wall-clock limit in seconds for tasks submitted without one (0: none).")
    default_memory_limit: int = _setting(0, "RSS limit in bytes for tasks submitted without one (0: none).")
    idle_timeout: float = _setting(0.0, "Leave after this many seconds without any task (0: never).")
    walltime_margin: float = _setting(
        60.0, "In a Slurm job: take no task and hand back what is left this many seconds before the job's end."
    )


@dataclasses.dataclass(frozen=True)
class ApptainerSettings:
    """The `[apptainer]` table: how container tasks are run."""

    executable: str = _setting("apptainer", "The apptainer command.")
    userns: str = _setting(
        "auto",
        "Run containers in a user namespace: true, false, or auto (yes when root lacks CAP_SYS_RESOURCE, "
        "as on machines where root cannot set up a container otherwise).",
    )
    binds: tuple[str, ...] = _setting((), "Extra --bind specs (SRC[:DEST[:OPTS]]), whitespace-separated in a flag.")
    options: tuple[str, ...] = _setting((), "Extra options put after `apptainer exec`, whitespace-separated in a flag.")
    cleanenv: bool = _setting(False, "Start containers with a clean environment (--cleanenv).")
    nv: str = _setting("auto", "Add --nv for GPUs: true, false, or auto (when the node has an NVIDIA GPU).")
    instances: bool = _setting(True, "Keep one started instance per image and run tasks in it (saves the start).")
    image_cache: str = _setting("", "Where pulled images go (default: <scratch>/tqhpc-<uid>/images, per node).")


S = TypeVar("S", ServerSettings, WorkerSettings, ApptainerSettings)
SECTIONS: dict[type, str] = {ServerSettings: "server", WorkerSettings: "worker", ApptainerSettings: "apptainer"}
PREFIXES: dict[type, str] = {ApptainerSettings: "apptainer_"}
"""Flags and variables of a table other than [server] and [worker] carry its name: --apptainer-userns."""


CONFIG_FILE = "config.toml"


def config_path(state_dir: Path | None = None) -> Path:
    """`$TQHPC_CONFIG`, else `config.toml` in `state_dir` (else in the default state directory).

    A file the user named must exist: a typo in $TQHPC_CONFIG would otherwise run everything on defaults without a
    word. The state directory's own file is optional: no file means no settings there.
    """
    env = os.environ.get("TQHPC_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise ConfigError(f"$TQHPC_CONFIG names {path}, which does not exist")
        if not path.is_file():
            raise ConfigError(f"$TQHPC_CONFIG names {path}, which is not a file")
        return path
    return (state_dir or default_state_dir()) / CONFIG_FILE


_KIND_NAMES: dict[Any, str] = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    tuple[str, ...]: "a list of strings",
}


def kind_name(kind: Any) -> str:
    """How a setting's type reads in an error: "must be an integer", not "must be a int"."""
    return _KIND_NAMES.get(kind) or f"a {kind.__name__}"


def _coerce(name: str, value: Any, kind: type, origin: str) -> Any:
    try:
        if kind == tuple[str, ...]:
            items = shlex.split(value) if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise TypeError(value)
            return tuple(items)
        if kind is bool and isinstance(value, str):
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        result = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} from {origin} must be {kind_name(kind)}, not {value!r}") from None
    if isinstance(result, int | float) and not isinstance(result, bool) and result < 0:
        raise ConfigError(f"{name} from {origin} must not be negative, got {value!r}")
    if name in PERIODS and result == 0:
        raise ConfigError(f"{name} from {origin} must be more than 0: it is how often something is done")
    return result


PERIODS = frozenset(
    {"worker_timeout", "reap_interval", "local_worker_ping_interval", "slurm_poll_interval", "ping_interval",
     "heartbeat_interval"}
)  # fmt: skip
"""Settings that pace a loop: 0 would make it spin."""


def load_settings(cls: type[S], flags: dict[str, Any] | None = None, path: Path | None = None) -> S:
    """Build settings of `cls` from the four layers; flags whose value is None are not given."""
    section = SECTIONS[cls]
    prefix = PREFIXES.get(cls, "")
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    path = path or config_path()
    if path.exists():
        try:
            table = tomli.loads(path.read_text()).get(section, {})
        except (tomli.TOMLDecodeError, OSError) as err:
            raise ConfigError(f"cannot read {path}: {err}") from None
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(f"unknown key {key!r} in [{section}] of {path} (known: {', '.join(fields)})")
            values[key] = _coerce(key, value, fields[key], str(path))
    for key, kind in fields.items():
        env_name = f"TQHPC_{prefix.upper()}{key.upper()}"
        if env_name in os.environ:
            values[key] = _coerce(key, os.environ[env_name], kind, f"${env_name}")
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, fields[key], f"--{(prefix + key).replace('_', '-')}")
    return cls(**values)


def settings_options(cls: type[S]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One flag per settings key (`--worker-timeout` for worker_timeout), so every key has its flag."""
    hints = typing.get_type_hints(cls)
    prefix = PREFIXES.get(cls, "")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(dataclasses.fields(cls)):
            flag = "--" + (prefix + f.name).replace("_", "-")
            kind = str if hints[f.name] == tuple[str, ...] else hints[f.name]
            option = click.option(flag, prefix + f.name, type=kind, default=None, help=f.metadata["help"])
            command = option(command)
        return command

    return decorate


def pop_settings(cls: type[S], options: dict[str, Any], path: Path | None = None) -> S:
    """Take the settings flags out of a command's keyword arguments and build the settings from all layers, the
    file being `path` (default: `config_path()`)."""
    prefix = PREFIXES.get(cls, "")
    return load_settings(cls, {f.name: options.pop(prefix + f.name) for f in dataclasses.fields(cls)}, path)

"""Pool profiles: the `[pools.NAME]` tables of config.toml, one kind of Slurm worker job each.

    [pools.short]
    partition = "debug"
    time_limit = "1:00:00"
    memory = "4G"
    sbatch_options = ["--qos=normal"]
    worker_init = "module load python/3.11"
    concurrency = 4
    autoalloc = true
    backlog = 1
    max_workers = 8
    idle_timeout = 300

`CreateWorker(provider="slurm", flavor=NAME)` submits jobs of the profile NAME; `autoalloc = true` lets the server
submit them by itself while tasks wait (see server/autoalloc.py). An empty flavor (what a seed client sends) names
the profile `default`: the `[pools.default]` table when config.toml has one, else one built from the cluster's
default partition, so that a first-time user gets workers without writing any configuration.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import tomli

from ..config import ConfigError, kind_name
from .partitions import Partition

_TIME_LIMIT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

DEFAULT_PROFILE = "default"
"""The profile an empty flavor names."""


@dataclasses.dataclass(frozen=True)
class PoolProfile:
    name: str
    partition: str = ""
    account: str = ""
    time_limit: str = "1:00:00"  # sbatch --time syntax; empty: none (the default profile on an unlimited partition)
    memory: str = ""  # sbatch --mem syntax ("4G"); empty: the partition's default
    sbatch_options: tuple[str, ...] = ()  # each one more `#SBATCH` line, e.g. "--qos=long"
    worker_init: str = ""  # shell lines run before the worker (module loads, environment)
    worker_command: str = ""  # default: this server's own Python, `-m tqhpc worker`
    concurrency: int = 1  # used when CreateWorker asks for 0
    prefetch: int = 1
    idle_timeout: float = 300.0  # seconds without a task before a worker leaves (0: never)
    walltime_margin: float = 60.0  # seconds before the job's end at which the worker drains
    ping_interval: float = 1.0
    autoalloc: bool = False
    backlog: int = 1  # jobs kept waiting in Slurm while tasks are pending
    max_workers: int = 4  # live workers of this pool at most, queued or running
    max_submit_failures: int = 3  # consecutive sbatch failures before autoalloc pauses the pool

    @property
    def task_time(self) -> float:
        """The longest declared run time (time_request) a worker of this pool can take: its job's time limit less
        the drain margin. Autoalloc submits jobs only for pending tasks that fit."""
        if not self.time_limit:
            return float("inf")
        return max(0.0, sbatch_time_seconds(self.time_limit) - self.walltime_margin)


def default_profile(partition: Partition) -> PoolProfile:
    """The profile of workers where a bare sbatch would run: the default partition and the time limit it gives a job
    that names none. Concurrency (--cpus-per-task) is the one asked for, else 1; the rest are PoolProfile's
    defaults, idle_timeout included, so a forgotten worker gives its allocation back."""
    return PoolProfile(name=DEFAULT_PROFILE, partition=partition.name, time_limit=partition.time_limit)


def sbatch_time_seconds(text: str) -> float:
    """Seconds in sbatch's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:
        hours, (minutes, seconds) = 0, [*parts, 0][:2]
    return float(((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds)


def parse_profiles(tables: dict[str, Any], origin: str) -> dict[str, PoolProfile]:
    """Check every key and type of the `[pools.*]` tables; any mistake is one ConfigError naming it."""
    hints = typing.get_type_hints(PoolProfile)
    fields = {f.name for f in dataclasses.fields(PoolProfile)} - {"name"}
    profiles = {}
    for name, table in tables.items():
        where = f"[pools.{name}] of {origin}"
        if not _NAME.match(name):
            raise ConfigError(f"pool name {name!r} in {origin}: use letters, digits, '_', '.', '-'")
        if not isinstance(table, dict):
            raise ConfigError(f"pools.{name} in {origin} must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(f"unknown key {key!r} in {where} (known: {', '.join(sorted(fields))})")
            values[key] = _check(key, value, hints[key], where)
        profile = PoolProfile(name=name, **values)
        if not _TIME_LIMIT.match(profile.time_limit):
            raise ConfigError(
                f"time_limit in {where} must be in sbatch --time form (like 1:00:00), not {profile.time_limit!r}"
            )
        if profile.concurrency < 1 or profile.max_workers < 1:
            raise ConfigError(f"concurrency and max_workers in {where} must be at least 1")
        for line in (*profile.sbatch_options, profile.partition, profile.account, profile.memory):
            if "\n" in line:
                raise ConfigError(f"{where}: sbatch settings must be one line each, not {line!r}")
        profiles[name] = profile
    return profiles


def _check(key: str, value: Any, kind: Any, where: str) -> Any:
    if kind == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} in {where} must be a list of strings, not {value!r}")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} in {where} must be {kind_name(kind)}, not {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{key} in {where} must not be negative, got {value!r}")
    return value


def load_profiles(path: Path) -> dict[str, PoolProfile]:
    """The profiles of config.toml at `path`; none when the file does not exist."""
    if not path.exists():
        return {}
    try:
        document = tomli.loads(path.read_text())
    except (tomli.TOMLDecodeError, OSError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    pools = document.get("pools", {})
    if not isinstance(pools, dict):
        raise ConfigError(f"pools in {path} must be a table of [pools.NAME] tables")
    return parse_profiles(pools, str(path))

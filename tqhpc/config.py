"""Settings: defaults, then `config.toml`, then `TQHPC_<KEY>` variables, then command-line flags.

One file serves the server and the workers: its `[server]` and `[worker]` tables hold the keys of the dataclasses
below. The file is `$TQHPC_CONFIG`, else `$TQHPC_HOME/config.toml` (the default state directory's).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomli

from .access import default_state_dir


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key, where it came from and what was wrong."""


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    worker_timeout: float = 60.0
    """Seconds without a ping after which a worker is lost and its unfinished tasks go back to pending."""
    reap_interval: float = 5.0
    """How often the server looks for lost workers."""
    local_worker_ping_interval: float = 1.0
    """Ping interval of the workers that CreateWorker(provider="local") starts."""


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 0
    """Tasks run at once; 0 means $SLURM_CPUS_PER_TASK, else the number of CPUs this process may use."""
    prefetch: int = 1
    """Tasks accepted beyond `concurrency`, so the next one starts without waiting for a ping."""
    ping_interval: float = 1.0
    """Seconds between heartbeats while idle; a worker pings at once whenever it has room for more work."""
    grace_period: float = 30.0
    """On SIGTERM, how long running tasks may go on before they are killed and handed back."""
    log_flush_interval: float = 0.2
    """How long output may wait in the worker before it is sent; it is sent sooner when a buffer fills."""
    scratch_dir: str = ""
    """Where per-task working directories go; empty means $TMPDIR (per job on most clusters), else /tmp."""


S = TypeVar("S", ServerSettings, WorkerSettings)


def config_path() -> Path:
    env = os.environ.get("TQHPC_CONFIG")
    return Path(env).expanduser() if env else default_state_dir() / "config.toml"


def _coerce(name: str, value: Any, kind: type, origin: str) -> Any:
    try:
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
        raise ConfigError(f"{name} from {origin} must be a {kind.__name__}, not {value!r}") from None
    if isinstance(result, int | float) and not isinstance(result, bool) and result < 0:
        raise ConfigError(f"{name} from {origin} must not be negative, got {value!r}")
    return result


def load_settings(cls: type[S], flags: dict[str, Any] | None = None, path: Path | None = None) -> S:
    """Build settings of `cls` from the four layers; flags whose value is None are not given."""
    section = "server" if cls is ServerSettings else "worker"
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
        env_name = f"TQHPC_{key.upper()}"
        if env_name in os.environ:
            values[key] = _coerce(key, os.environ[env_name], kind, f"${env_name}")
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, fields[key], f"--{key.replace('_', '-')}")
    return cls(**values)

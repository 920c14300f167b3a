"""The plugin's options, which Snakemake offers as `--tqhpc-<name>` flags (and `SNAKEMAKE_TQHPC_<NAME>` variables)."""

# No `from __future__ import annotations` here: Snakemake reads each field's type at run time to parse its flag.
from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    access: Optional[str] = field(  # noqa: UP045 - Snakemake's parser knows Optional, not X | None
        default=None,
        metadata={
            "help": "The tqhpc server's access file, or the state directory that holds it "
            "(default: $TQHPC_ACCESS, else the default state directory, as for every tqhpc client).",
            "env_var": False,
            "required": False,
        },
    )
    name_prefix: str = field(
        default="",
        metadata={
            "help": "Put this before the rule's name in each task's name (default: none, so that "
            "`tqhpc tasks --name RULE` lists a rule's jobs).",
            "env_var": False,
            "required": False,
        },
    )
    timeout_from_runtime: bool = field(
        default=False,
        metadata={
            "help": "Kill a job that runs longer than its `runtime` resource, as Slurm would (default: runtime only "
            "tells tqhpc how long the job expects to run, so that it goes to a worker with enough walltime left).",
            "env_var": False,
            "required": False,
        },
    )
    status_interval: float = field(
        default=1.0,
        metadata={
            "help": "Seconds between two status checks; each asks the server about every running job in one call "
            "(default: 1).",
            "env_var": False,
            "required": False,
        },
    )

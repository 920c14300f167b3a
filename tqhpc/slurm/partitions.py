"""The cluster's partitions as `scontrol show partition --oneliner` prints them, and which one is the default.

The default pool profile runs workers where a bare `sbatch` would put a job: the partition Slurm marks
`Default=YES`, with the time limit that partition gives a job that names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NO_TIME_LIMIT = frozenset({"", "NONE", "UNLIMITED", "INFINITE", "INFINITY", "N/A"})
"""How scontrol spells "no limit" (DefaultTime=NONE, MaxTime=UNLIMITED)."""

_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


class PartitionError(ValueError):
    """scontrol's answer does not say what the default partition needs: the message says what is missing."""


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    time_limit: str  # sbatch --time syntax; empty: no limit

    @classmethod
    def from_line(cls, line: str) -> Partition:
        fields = dict(field.partition("=")[::2] for field in line.split())
        name = fields.get("PartitionName", "")
        if not name:
            raise PartitionError(f"scontrol printed a partition without a name: {line.strip()!r}")
        return cls(name=name, default=fields.get("Default") == "YES", time_limit=_time_limit(name, fields))


def _time_limit(name: str, fields: dict[str, str]) -> str:
    """What Slurm gives a job that names no --time: DefaultTime when the partition sets one, else MaxTime."""
    for key in ("DefaultTime", "MaxTime"):
        value = fields.get(key, "")
        if value.upper() in NO_TIME_LIMIT:
            continue
        if not _SLURM_TIME.match(value):
            raise PartitionError(f"partition {name}: cannot read {key}={value!r} as a Slurm time")
        return value
    return ""


def parse_partitions(text: str) -> list[Partition]:
    """One Partition per non-empty line of `scontrol show partition --oneliner`."""
    return [Partition.from_line(line) for line in text.splitlines() if line.strip()]


def default_partition(partitions: list[Partition]) -> Partition:
    """The partition marked Default=YES; a cluster that marks none wants --partition on every sbatch."""
    found = next((p for p in partitions if p.default), None)
    if found is None:
        names = ", ".join(p.name for p in partitions) or "none"
        raise PartitionError(f"the Slurm cluster marks no partition as its default (partitions: {names})")
    return found

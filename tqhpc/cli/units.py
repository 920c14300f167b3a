"""Sizes and durations as people write and read them: `--memory 2G`, `--timeout 1h30m`, `1.2 GiB`."""

from __future__ import annotations

import re

import click

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms]?)", re.IGNORECASE)
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `512M`, `2G`, `1.5GiB` (K, M, G, T are powers of 1024, as Slurm's --mem)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size: give bytes or a number with K, M, G or T (e.g. 2G)")
    number, unit, _ = match.groups()
    return int(float(number) * 1024 ** _POWERS[unit.lower()])


def parse_duration(text: str) -> float:
    """Seconds from `90`, `1.5`, `30s`, `10m`, `1h30m`, `2d`."""
    cleaned = text.strip()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts).replace(" ", "") != cleaned.replace(" ", ""):
        raise ValueError(f"{text!r} is not a duration: give seconds or e.g. 90s, 10m, 1h30m")
    return sum(float(number) * _SECONDS[unit.lower()] for number, unit in parts)


def format_size(size: int | None) -> str:
    if not size:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


class SizeType(click.ParamType):
    name = "SIZE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return value if isinstance(value, int) else parse_size(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return value if isinstance(value, float) else parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)

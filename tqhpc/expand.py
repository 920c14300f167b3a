"""One command line becomes many tasks (`--array`, `--each-line`, `--param`), with `{}` and `{name}`
placeholders. Pure functions, so every rule is tested without a server."""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .limits import MAX_SWEEP_TASKS

MAX_ARRAY = MAX_SWEEP_TASKS


class ExpandError(ValueError):
    """Bad --array / --param / placeholder input; the message is meant for the user as it is."""


@dataclass(frozen=True)
class Expanded:
    command: str
    array_id: str  # $TQHPC_ARRAY_ID of the task


def parse_array(text: str) -> list[int]:
    """`1-1000`, `0-99:10` (a step), `3,7,9`, or a mix: `1-3,10`.

    Each range is counted before it is built, so `1-100000000` is refused at once instead of after filling memory.
    """
    values: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        try:
            if "-" in part:
                span, _, step_text = part.partition(":")
                first_text, _, last_text = span.partition("-")
                first, last, step = int(first_text), int(last_text), int(step_text or 1)
                if step < 1 or last < first:
                    raise ExpandError(f"--array range {part!r} must go up, with a step of at least 1")
                ids = range(first, last + 1, step)
            else:
                ids = range(int(part), int(part) + 1)
        except ValueError as err:
            if isinstance(err, ExpandError):
                raise
            raise ExpandError(f"--array takes ranges like 1-1000, 0-99:10 or 3,7,9, not {text!r}") from None
        if len(values) + len(ids) > MAX_ARRAY:
            raise ExpandError(f"--array gives more than {MAX_ARRAY} tasks, the most one sweep may make")
        values.extend(ids)
    if any(v < 0 for v in values):
        raise ExpandError("--array ids must not be negative")
    return values


def parse_params(items: Sequence[str]) -> dict[str, list[str]]:
    """`a=1,2,3` → {'a': ['1', '2', '3']}; names must be identifiers and appear once."""
    params: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ExpandError(f"--param takes NAME=V1,V2,..., not {item!r}")
        if name in params:
            raise ExpandError(f"--param {name} is given twice")
        params[name] = [v.strip() for v in values.split(",")]
        if not values.strip() or not all(params[name]):
            raise ExpandError(f"--param {name} has an empty value")
    return params


def _fill(words: Sequence[str], values: dict[str, str]) -> str:
    """One argument: a shell line, the values shell-quoted into it. Several: a program and its arguments, the
    values put in as they are, then quoted as a whole."""
    if len(words) == 1:
        line = words[0]
        for key, value in values.items():
            line = line.replace("{" + key + "}", shlex.quote(value))
        return line
    filled = []
    for word in words:
        result = word
        for key, value in values.items():
            result = result.replace("{" + key + "}", value)
        filled.append(result)
    return shlex.join(filled)


def _check_used(words: Sequence[str], names: Iterable[str]) -> None:
    text = " ".join(words)
    unused = ["{" + name + "}" for name in names if "{" + name + "}" not in text]
    if unused:
        raise ExpandError(f"the command does not use {', '.join(unused)}: every task would be the same")


def from_array(words: Sequence[str], ids: Sequence[int]) -> list[Expanded]:
    """`{}` is the array id; `$TQHPC_ARRAY_ID` holds it too (so `{}` is optional)."""
    return [Expanded(_fill(words, {"": str(i)}), str(i)) for i in ids]


def from_lines(words: Sequence[str], lines: Sequence[str]) -> list[Expanded]:
    """`{}` is the line; `$TQHPC_ARRAY_ID` its 0-based number."""
    _check_used(words, [""])
    return [Expanded(_fill(words, {"": line}), str(i)) for i, line in enumerate(lines)]


def from_params(words: Sequence[str], params: dict[str, list[str]]) -> list[Expanded]:
    """Every combination of the parameters, the last varying fastest; `{name}` is a value."""
    _check_used(words, params)
    names = list(params)
    combos = itertools.product(*(params[n] for n in names))
    return [Expanded(_fill(words, dict(zip(names, combo, strict=True))), str(i)) for i, combo in enumerate(combos)]


def read_lines(text: str) -> list[str]:
    """The non-empty lines of a file, without their line ends."""
    return [line for line in text.splitlines() if line.strip()]

"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..client import Client
from ..status import Status, TransitionError, status_letters


def access_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--access",
        type=click.Path(dir_okay=True),
        default=None,
        help="The server's access.toml (or its state directory); default: $TQHPC_ACCESS, else the default state dir.",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def connect(access: str | None) -> Client:
    return Client(access)


def status_filter(text: str) -> str:
    """The status letters a --status value names (letters, names or both: `F`, `failed`, `running,pending`), as
    letters, which every server takes."""
    try:
        return status_letters(text)
    except TransitionError as err:
        raise click.BadParameter(str(err), param_hint="--status") from None


def complete_status(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of a --status value: status names, also after a comma (`running,pe` -> `running,pending`)."""
    done, _, word = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + status.label for status in Status if status.label.startswith(word.lower())]

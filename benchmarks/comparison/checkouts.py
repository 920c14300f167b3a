"""Which tqhpc a server runs: the seed-only worker's case can run against servers of other checkouts (an older
commit's worktree with its own .venv), named in the table by their commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

FIND_PACKAGE = "import pathlib, tqhpc; print(pathlib.Path(tqhpc.__file__).resolve().parent)"


class CheckoutError(Exception):
    """This interpreter cannot start a tqhpc server."""


def server_label(python: str) -> str:
    """The commit of the checkout whose tqhpc `python` imports, short, with "+" when its tqhpc/ has changes not
    committed; the interpreter's path when that checkout is not a git worktree."""
    try:
        found = subprocess.run([python, "-c", FIND_PACKAGE], capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        raise CheckoutError(f"{python} cannot be run: {err.strerror or err}") from None
    if found.returncode != 0:
        last = (found.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckoutError(f"{python} cannot import tqhpc: {last}")
    package = Path(found.stdout.strip())

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, check=False)
        except OSError:  # no git here
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return python
    return commit + ("+" if git("status", "--porcelain", "--", ".") else "")

"""Which tqhpc a server runs: the seed-only worker's case can run against servers of other checkouts (an older
commit's worktree with its own .venv), named in the table by their commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

FIND_PACKAGE = "import pathlib, tqhpc; print(pathlib.Path(tqhpc.__file__).resolve().parent)"


class CheckoutError(Exception):
    """This interpreter cannot start a tqhpc server."""


def server_label(python: str) -> str:
    """The last commit that changed the tqhpc package `python` imports (the server's code; commits to the benchmarks
    alone do not count), short, with "+" when the package has changes not committed; the interpreter's path when
    that checkout is not a git worktree."""
    try:
        command = [python, "-P", "-c", FIND_PACKAGE]  # -P: not a tqhpc/ that happens to be in the working directory
        found = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
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

    commit = git("log", "-1", "--format=%h", "--", ".")
    if not commit:
        return python
    return commit + ("+" if git("status", "--porcelain", "--", ".") else "")

#!/usr/bin/env python3
"""A parameter sweep through tqhpc: submit a grid of integrations, wait, collect the results from stdout.

Run it against a running server (see the README's first command, which does all of it for you):

    python examples/sweep.py --access STATE_DIR/access.toml
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tqhpc import Client, Status

HERE = Path(__file__).resolve().parent
A_VALUES = [1.0, 2.0, 3.0, 4.0]
B_VALUES = [0.0, 0.5, 1.0]


def exact(a: float, b: float) -> float:
    """The closed form of the integral, to check every task's answer."""
    return (a - math.exp(-b) * (b * math.sin(a) + a * math.cos(a))) / (a * a + b * b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--access", default=None, help="the server's access.toml (default: $TQHPC_ACCESS)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    with Client(args.access) as client:
        script = shlex.quote(str(HERE / "integrate.py"))
        python = shlex.quote(sys.executable)
        ids = {
            client.submit(f"{python} {script} --a {a} --b {b}"): (a, b)
            for a, b in itertools.product(A_VALUES, B_VALUES)
        }
        print(f"submitted {len(ids)} tasks: {min(ids)}..{max(ids)}")
        deadline = time.monotonic() + args.timeout
        while True:
            tasks = {t.task_id: t for t in client.tasks() if t.task_id in ids}
            if all(t.status.terminal for t in tasks.values()):
                break
            if time.monotonic() > deadline:
                print(f"gave up after {args.timeout:g} s; is a worker running?", file=sys.stderr)
                return 1
            time.sleep(0.2)

        table = Table(title="∫₀¹ sin(a·x)·e^(-b·x) dx")
        for column in ("task", "a", "b", "integral", "|error|", "check"):
            table.add_column(column, justify="right")
        failures = 0
        for task_id, (a, b) in sorted(ids.items()):
            task = tasks[task_id]
            if task.status != Status.SUCCEEDED:
                failures += 1
                table.add_row(str(task_id), f"{a:g}", f"{b:g}", "", "", f"[red]{task.status.label}[/]")
                continue
            stdout = b"".join(c.data for c in client.logs(task_id) if c.stream == "O")
            value = json.loads(stdout)["integral"]
            error = abs(value - exact(a, b))
            ok = error < 1e-9
            failures += not ok
            table.add_row(str(task_id), f"{a:g}", f"{b:g}", f"{value:.10f}", f"{error:.1e}", "ok" if ok else "WRONG")
        Console().print(table)
        print(f"{len(ids) - failures} of {len(ids)} results match the closed form")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

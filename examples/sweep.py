#!/usr/bin/env python3
"""A parameter sweep through tqhpc: submit a grid of integrations, wait, collect the results from stdout.

Run it against a running server (see the README's first command, which does all of it for you):

    python examples/sweep.py --access STATE_DIR/access.toml
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tqhpc import Client

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
        # One call submits the whole grid (the cartesian product of a and b), in one batch.
        sweep = client.sweep(
            f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'integrate.py'))} --a {{a}} --b {{b}}",
            a=A_VALUES,
            b=B_VALUES,
            name="integrate",
            retry=1,  # a task that fails is run once more before it counts as failed
        )
        print(f"submitted {len(sweep)} tasks: {sweep.ids[0]}..{sweep.ids[-1]}")
        try:
            results = sweep.wait(timeout=args.timeout)  # a progress bar when run in a terminal
        except TimeoutError as err:
            print(f"gave up after {args.timeout:g} s ({err}); is a worker running?", file=sys.stderr)
            return 1

        table = Table(title="∫₀¹ sin(a·x)·e^(-b·x) dx")
        for column in ("task", "a", "b", "integral", "|error|", "check"):
            table.add_column(column, justify="right")
        failures = 0
        for params, result in zip(sweep.params, results, strict=True):
            a, b = params["a"], params["b"]
            task_id = result.task_id
            if not result.ok:
                failures += 1
                table.add_row(str(task_id), f"{a:g}", f"{b:g}", "", "", f"[red]{result.status.label}[/]")
                continue
            value = json.loads(sweep.stdout(task_id))["integral"]
            error = abs(value - exact(a, b))
            ok = error < 1e-9
            failures += not ok
            table.add_row(str(task_id), f"{a:g}", f"{b:g}", f"{value:.10f}", f"{error:.1e}", "ok" if ok else "WRONG")
        for params, result in sweep.failures():
            print(f"failed: {params} ({result.reason}); `sweep.rerun_failed()` would run only these again")
        Console().print(table)
        print(f"{len(sweep) - failures} of {len(sweep)} results match the closed form")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

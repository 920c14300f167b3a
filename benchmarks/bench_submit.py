#!/usr/bin/env python3
"""How fast tasks can be submitted from Python: `submit_many` (batched SubmitTasks) against single `SubmitTask`
calls, both measured in the same run against the same real server (no worker, so only submission is timed).

The goal is over 20,000 tasks/s with submit_many on a 2-core machine. Usage:

    .venv/bin/python benchmarks/bench_submit.py [--batched 100000] [--single 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import running_server

from tqhpc import Client, TaskSpec


def single_calls(client: Client, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        client.submit(f"python sim.py --seed {i}", name="single")
    return count / (time.perf_counter() - start)


def batched(client: Client, count: int) -> float:
    """Including building the specs, as a user's script would."""
    start = time.perf_counter()
    ids = client.submit_many(TaskSpec(f"python sim.py --seed {i}", name="batched") for i in range(count))
    rate = count / (time.perf_counter() - start)
    assert len(ids) == count and ids == list(range(ids[0], ids[0] + count)), "ids not in order"
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batched", type=int, default=100_000, help="tasks per submit_many round")
    parser.add_argument("--single", type=int, default=10_000, help="single SubmitTask calls")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="tqhpc-bench-submit-") as tmp,
        running_server(Path(tmp) / "state") as (_, access),
        Client(access) as client,
    ):
        time.sleep(0.3)
        client.submit_many(["true"] * 1000)  # warm up the channel and the server
        single = single_calls(client, args.single)
        rates = [batched(client, args.batched) for _ in range(args.rounds)]
    best, worst = max(rates), min(rates)
    print(f"single SubmitTask calls: {single:10,.0f} tasks/s ({args.single:,} calls)")
    print(f"submit_many (batched):   {best:10,.0f} tasks/s best of {args.rounds} rounds of {args.batched:,} "
          f"(worst {worst:,.0f})")  # fmt: skip
    print(f"ratio batched/single:    {best / single:10.1f}x")
    print(f"goal > 20,000 tasks/s:   {'met' if best > 20_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

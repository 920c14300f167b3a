#!/usr/bin/env python3
"""`tqhpc stats` over a big store: N ended tasks (default 100,000) with usage records, on a real server.

The tasks are submitted through the server (`submit_many`), then the server is stopped and their ends are written
into its SQLite file as a sweep that ran would have left them: each task `S` (one in fifty `F`, of varied failure
kinds) with one attempt record carrying a wall time, CPU time and peak RSS. The server is started again on the same
state directory and `tqhpc stats`, `tqhpc stats --json` and (when matplotlib is installed) `tqhpc stats --plot` are
timed through a pipe, as a user would run them. Usage:

    .venv/bin/python benchmarks/bench_stats.py [--tasks 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import running_server, tqhpc

from tqhpc import Client, TaskSpec

PAGE = 100_000
FAILURES = ("exit_code", "timeout", "memory", "signal", "cwd")


def submit(access: Path, count: int) -> None:
    with Client(access) as client:
        for offset in range(0, count, PAGE):
            client.submit_many(
                TaskSpec(f"python sim.py --seed {i}", name="bench") for i in range(offset, min(count, offset + PAGE))
            )


def end_them(database: Path, count: int) -> None:
    """Every task ended as a sweep's would: one attempt each, with its usage, most succeeded, a few failed."""
    rng = random.Random(7)
    start = time.time() - 3 * 3600
    conn = sqlite3.connect(database)
    with conn:
        tasks, attempts = [], []
        for task_id in range(1, count + 1):
            wall = rng.lognormvariate(4.0, 0.5)  # about a minute, a long tail
            began = start + task_id * 0.1
            ended = began + wall
            failed = task_id % 50 == 0
            failure = FAILURES[(task_id // 50) % len(FAILURES)] if failed else ""
            exit_code = 1 if failed else 0
            cpu = wall * rng.uniform(0.6, 0.98)
            rss = int(rng.lognormvariate(20.0, 0.3))  # about 500 MB
            tasks.append(("F" if failed else "S", exit_code, began, ended, failure, task_id))
            attempts.append(
                (task_id, "bench-worker", "node1", began, ended, wall, cpu * 0.9, cpu * 0.1, rss, rss // 2, exit_code,
                 int(wall), failure)
            )  # fmt: skip
        conn.executemany(
            "UPDATE tasks SET status = ?, exit_code = ?, attempts = 1, started_at = ?, ended_at = ?, failure = ? "
            "WHERE task_id = ?",
            tasks,
        )
        conn.executemany(
            "INSERT INTO task_attempts (task_id, attempt, worker_name, hostname, started_at, ended_at, wall_time, "
            "cpu_user, cpu_system, peak_rss, last_rss, exit_code, samples, final, failure) "
            "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            attempts,
        )
    conn.close()


def timed(access: Path, *args: str) -> tuple[float, str]:
    env = dict(os.environ, TQHPC_ACCESS=str(access))
    start = time.perf_counter()
    done = subprocess.run(tqhpc("stats", *args), capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tqhpc stats {' '.join(args)} failed: {done.stderr.strip()}")
    return took, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqhpc-bench-stats-") as tmp:
        state = Path(tmp) / "state"
        with running_server(state) as (_, access):
            time.sleep(0.3)
            submit(access, args.tasks)
        end_them(state / "tqhpc.db", args.tasks)
        with running_server(state) as (_, access):
            time.sleep(0.5)
            human, table = timed(access)
            machine, text = timed(access, "--json")
            counted = json.loads(text)["count"]
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                plot = None
            else:
                plot, _ = timed(access, "--plot", str(Path(tmp) / "stats.png"))
    print(table)
    print(f"tqhpc stats over {counted:,} tasks: {human:.2f} s (table), {machine:.2f} s (--json)", end="")
    print(f", {plot:.2f} s (--plot)" if plot is not None else ", --plot not measured (no matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

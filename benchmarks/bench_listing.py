#!/usr/bin/env python3
"""Listing and dispatch with a very long queue: N tasks (default 1,000,000) pending on a real server.

Measured, in this order, against one server:
- submitting them with `submit_many` (batches of 10,000);
- `tqhpc tasks` read through a pipe, as `tqhpc tasks | less` or `| grep` would: time to its first task row and to
  its last line;
- the Python client's `tasks()` (the whole list in memory);
- the server's resident memory before and at its peak during the listings (sampled every 20 ms);
- a worker's `PingAndTakeNewTasks` with all of them pending and none runnable by it (all are container tasks, it
  cannot run containers; half also need two slots, it has one): what every heartbeat costs the server then.

The goals: first row within 1 s, all rows within 15 s, server under 300 MiB, a ping well under 50 ms. The machine is
shared with whatever else runs on it: run it twice before believing a single figure. Usage:

    .venv/bin/python benchmarks/bench_listing.py [--tasks 1000000] [--pings 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import running_server, tqhpc

from tqhpc import Client, TaskSpec
from tqhpc._proto import pb
from tqhpc.channel import sync_stub

PAGE = 100_000
"""Tasks built and submitted per round, so the benchmark itself never holds a million specs."""


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def peak_rss(pid: int) -> Iterator[list[float]]:
    """Sample the process's RSS every 20 ms while the block runs; the list holds the peak afterwards."""
    peak = [rss_mib(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def unrunnable(index: int) -> TaskSpec:
    """A task the benchmark's pinging worker (concurrency 1, no containers) can never take: a container task, and
    every other one also needs two slots."""
    return TaskSpec(f"python sim.py --seed {index}", container="docker://busybox", slots=1 + index % 2, name="bench")


def submit(client: Client, count: int) -> float:
    start = time.perf_counter()
    for offset in range(0, count, PAGE):
        client.submit_many(unrunnable(i) for i in range(offset, min(count, offset + PAGE)))
    return time.perf_counter() - start


def cli_listing(access: Path) -> tuple[float, float, int]:
    """(seconds to the first task row, seconds to the end, task rows) of `tqhpc tasks` read through a pipe."""
    env = dict(os.environ, TQHPC_ACCESS=str(access))
    start = time.perf_counter()
    process = subprocess.Popen(tqhpc("tasks"), stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    first = None
    rows = 0
    for line in process.stdout:
        if line.lstrip()[:1].isdigit() and b" tasks: " not in line:
            rows += 1
            if first is None:
                first = time.perf_counter() - start
    if process.wait() != 0:
        raise SystemExit(f"tqhpc tasks failed with exit code {process.returncode}")
    return first or 0.0, time.perf_counter() - start, rows


def client_listing(client: Client) -> tuple[float, int]:
    start = time.perf_counter()
    tasks = client.tasks()
    return time.perf_counter() - start, len(tasks)


def ping_latencies(access: Path, pings: int) -> list[float]:
    """Milliseconds per ping of a worker that can run none of the pending tasks."""
    from tqhpc.access import read_access

    channel, stub = sync_stub(read_access(access))
    try:
        worker = stub.RegisterWorker(
            pb.WorkerInfo(name="bench-pinger", concurrency=1, prefetch=0, container_capable=False)
        ).worker_id
        times = []
        for _ in range(pings):
            start = time.perf_counter()
            reply = stub.PingAndTakeNewTasks(pb.WorkerId(worker_id=worker))
            times.append((time.perf_counter() - start) * 1000)
            if reply.tasks:
                given = [t.task_id for t in reply.tasks]
                raise SystemExit(f"the pinging worker was given tasks it cannot run: {given}")
        stub.DeleteWorker(pb.WorkerId(worker_id=worker))
        return times
    finally:
        channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--pings", type=int, default=200)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="tqhpc-bench-listing-") as tmp,
        running_server(Path(tmp) / "state") as (server, access),
        Client(access) as client,
    ):
        time.sleep(0.3)
        submitted = submit(client, args.tasks)
        rate = args.tasks / submitted
        print(f"submitted {args.tasks:,} tasks in {submitted:.1f} s ({rate:,.0f} tasks/s)", flush=True)
        idle = rss_mib(server.pid)
        with peak_rss(server.pid) as cli_peak:
            first, last, rows = cli_listing(access)
        with peak_rss(server.pid) as client_peak:
            listed, count = client_listing(client)
        pings = sorted(ping_latencies(access, args.pings))
    if rows != args.tasks or count != args.tasks:
        print(f"WARNING: listed {rows:,} rows in the CLI and {count:,} tasks in the client, not {args.tasks:,}")
    p50 = statistics.median(pings)
    p99 = pings[min(len(pings) - 1, int(len(pings) * 0.99))]
    print(f"tqhpc tasks | (pipe):     first row {first:6.2f} s   last row {last:6.2f} s   ({rows:,} rows)")
    print(f"Client.tasks():           {listed:6.2f} s   ({count:,} tasks)")
    print(f"server RSS:               {idle:6.0f} MiB before listing, peak {cli_peak[0]:.0f} MiB (CLI) "
          f"and {client_peak[0]:.0f} MiB (client)")  # fmt: skip
    print(f"ping, nothing runnable:   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   max {pings[-1]:6.2f} ms"
          f"   ({len(pings)} pings)")  # fmt: skip
    goals = [
        ("first row within 1 s", first <= 1.0),
        ("all rows within 15 s", last <= 15.0),
        ("server RSS under 300 MiB", max(cli_peak[0], client_peak[0]) < 300),
        ("ping p99 under 50 ms", p99 < 50),
    ]
    for goal, met in goals:
        print(f"goal {goal}: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What a trivial task costs end to end: 1000 `true` tasks through a real server and one worker.

The peer, measured in the same run on the same machine, is the floor for this work: the same 1000 `sh -c true`
run by a bare pool of 2 subprocesses with no queue at all. The ratio says what the queue (gRPC, SQLite, status
reports, log shipping) costs on top of starting processes. Usage:

    .venv/bin/python benchmarks/bench_trivial_tasks.py [--tasks 1000] [--concurrency 2] [--prefetch 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from common import running_server, tqhpc

from tqhpc import Client


def bare_pool(tasks: int, concurrency: int) -> float:
    """Tasks per second for `sh -c true` in a plain pool of `concurrency` processes."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: subprocess.run(["/bin/sh", "-c", "true"], check=True), range(tasks)))
    return tasks / (time.perf_counter() - start)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def through_tqhpc(tasks: int, concurrency: int, prefetch: int, state: Path) -> tuple[float, float, dict[str, float]]:
    """(submissions per second, tasks per second from first submission to last task done, CPU seconds by process)."""
    worker = None
    with running_server(state) as (server, access), Client(access) as client:
        try:
            worker = subprocess.Popen(
                tqhpc("worker", "--access", str(access), "--concurrency", str(concurrency),
                      "--prefetch", str(prefetch), "--scratch-dir", str(state / "scratch")),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            while not client.workers():
                time.sleep(0.05)
            start = time.perf_counter()
            ids = [client.submit("true") for _ in range(tasks)]
            submitted = time.perf_counter()
            # Poll one task cheaply (tasks run oldest first), list them all only when it is done.
            while True:
                if client.task(ids[-1]).status.terminal:
                    done = client.tasks("SF")
                    if len(done) == tasks:
                        break
                time.sleep(0.01)
            finished = time.perf_counter()
            failed = [t.task_id for t in done if t.status.value != "S"]
            if failed:
                raise SystemExit(f"{len(failed)} tasks failed, e.g. {failed[:5]}")
            cpu = {name: _cpu_seconds(p.pid) for name, p in (("server", server), ("worker", worker))}
        finally:
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
    return tasks / (submitted - start), tasks / (finished - start), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; {args.tasks} tasks of `true`, concurrency {args.concurrency}")
    peer = bare_pool(args.tasks, args.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        submit_rate, rate, cpu = through_tqhpc(args.tasks, args.concurrency, args.prefetch, Path(tmp) / "state")
    print(f"bare pool of {args.concurrency} processes (peer):  {peer:8.1f} tasks/s")
    print(f"tqhpc, one worker, end to end:          {rate:8.1f} tasks/s  ({1000 / rate:.2f} ms a task)")
    print(f"tqhpc, SubmitTask one by one:           {submit_rate:8.1f} submissions/s")
    print(f"ratio tqhpc / bare pool:                {rate / peer:8.2f}")
    for name, seconds in cpu.items():
        print(f"CPU of the {name} process:            {1000 * seconds / args.tasks:8.2f} ms a task (start-up included)")


if __name__ == "__main__":
    main()
